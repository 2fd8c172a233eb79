"""The call pipeline, written once for both faces: admit → authenticate → limits → handler → error translation.

    admit          take a concurrency slot (health and reflection are exempt), refuse undecodable bytes
    authenticate   the method's auth policy from the contract, decided here and nowhere else
    limits         per-call limits given to the pipeline (`CallLimit`), after the caller is known
    handler        the RPC's function of (request, call) from the handler table
    translation    any exception becomes an `ErrorDescription` (`transport/errors.py`), raised as `CallFailed`

A face adapts its wire to this: it opens a `CallScope` with `Pipeline.begin` (the call's metadata, peer,
deadline and cancellation as plain callables), runs `unary` or `stream`, renders a `CallFailed` on its wire
(grpc status + `grpc-status-details-bin`, or a Connect error) and calls `finish` once. The scope is the `Call`
the handler receives and the current call of the task (logs read its request id).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from typing import Any, Protocol

from opentelemetry.trace import Status, StatusCode

from gateway.calls import Call, Metadata, call_var
from gateway.errors import MalformedRequestError, MethodNotFoundError, OverloadedError
from gateway.observability import Metrics, Tracing, attach, detach
from gateway.transport.auth import Authenticator, Unverified
from gateway.transport.errors import ErrorDescription, describe
from gateway.transport.policy import AuthPolicy
from gateway.transport.table import Method, StreamHandler, UnaryHandler

__all__ = [
    "MALFORMED",
    "REQUEST_ID_HEADER",
    "UNKNOWN_METHOD",
    "CallFailed",
    "CallLimit",
    "CallScope",
    "ConcurrencyLimiter",
    "Pipeline",
    "Route",
]

access_log = logging.getLogger("gateway.access")

REQUEST_ID_HEADER = "x-request-id"
OVERLOAD_RETRY_SECONDS = 1.0
# The metrics label of every method outside the table: label values stay bounded whatever callers send.
UNKNOWN_METHOD = "/unknown/unknown"


class _Malformed:
    """Stands in for a request whose bytes did not decode."""


MALFORMED = _Malformed()


class CallFailed(Exception):
    """A call ended in an error, already described for the wire; the face renders `description`."""

    def __init__(self, description: ErrorDescription) -> None:
        super().__init__(description.reason)
        self.description = description


class CallLimit(Protocol):
    """A per-call limit the pipeline applies after authentication (a rate limit, a quota)."""

    async def check(self, call: Call) -> None:
        """Return to let the call run; raise a domain error (RateLimitedError, ...) to refuse it."""
        ...


class ConcurrencyLimiter:
    """Counts calls in flight, on both faces together; past the limit new calls are refused at once.

    grpc's own `maximum_concurrent_rpcs` was seen to stop limiting after the first wave of calls (grpc/grpc
    issue 41531), and without a limit grpc core cancels calls silently once about 1,000 are pending.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        """Give a slot back."""
        self.in_flight -= 1


class Route:
    """What the pipeline needs to know of one method, worked out once when a face mounts it."""

    __slots__ = ("authenticates", "infrastructure", "label", "path", "policy")

    def __init__(self, path: str, policy: AuthPolicy, *, infrastructure: bool = False, label: str | None = None):
        self.path = path
        self.policy = policy
        self.infrastructure = infrastructure
        # A PUBLIC method has nothing to authenticate: no coroutine to run on each such call.
        self.authenticates = policy is not AuthPolicy.PUBLIC
        self.label = label or path


class Pipeline:
    """The steps every call passes, for both faces: one authenticator, one concurrency limit, the call limits."""

    def __init__(
        self,
        authenticator: Authenticator,
        limiter: ConcurrencyLimiter,
        *,
        limits: Sequence[CallLimit] = (),
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.limits = tuple(limits)
        self.metrics = metrics
        self.tracing = tracing if tracing is not None and tracing.enabled else None
        self.unknown = Route(UNKNOWN_METHOD, AuthPolicy.REQUIRED)

    @staticmethod
    def route(method: Method) -> Route:
        """The route of a method of the handler table."""
        return Route(method.path, method.policy)

    @staticmethod
    def infrastructure_route(path: str) -> Route:
        """Health and reflection: PUBLIC (grpcurl sends no headers on reflection) and exempt from the limit."""
        return Route(path, AuthPolicy.PUBLIC, infrastructure=True)

    def begin(
        self,
        route: Route,
        path: str,
        metadata: Metadata,
        face: str,
        *,
        peer: Callable[[], str] | None = None,
        time_remaining: Callable[[], float | None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> CallScope:
        """Open a call: its scope becomes the current call (no principal yet; the request id is made when read)."""
        return CallScope(self, route, path, metadata, face, peer, time_remaining, cancelled)

    @staticmethod
    def _admit(request: Any, scope: CallScope) -> None:
        scope.acquire_slot()
        if request is MALFORMED:
            raise MalformedRequestError("the request message could not be decoded")

    def _authenticate_now(self, scope: CallScope) -> Unverified | None:
        """The auth step as far as it goes without waiting; the token left to verify, if any."""
        outcome = self.authenticator.check(scope.route.policy, scope.metadata)
        if isinstance(outcome, Unverified):
            return outcome
        scope.principal = outcome
        return None

    async def _gate(self, scope: CallScope, unverified: Unverified | None) -> None:
        """What has to wait: verifying a token seen for the first time, then the call limits."""
        if unverified is not None:
            scope.principal = await self.authenticator.verify(unverified)
        if not scope.route.infrastructure:
            for limit in self.limits:
                await limit.check(scope)

    async def unary(self, handler: UnaryHandler, request: Any, scope: CallScope) -> Any:
        """Run a unary call to its response. Raises CallFailed."""
        try:
            self._admit(request, scope)
            unverified = self._authenticate_now(scope) if scope.route.authenticates else None
            if unverified is not None or self.limits:
                await self._gate(scope, unverified)
            return await handler(request, scope)
        except Exception as exc:
            raise CallFailed(scope.describe(exc)) from None

    async def stream(self, handler: StreamHandler, request: Any, scope: CallScope) -> AsyncGenerator[Any, None]:
        """Run a server-streaming call, yielding its messages. Raises CallFailed, also after messages were sent."""
        try:
            self._admit(request, scope)
            unverified = self._authenticate_now(scope) if scope.route.authenticates else None
            if unverified is not None or self.limits:
                await self._gate(scope, unverified)
            # Closed here, not when garbage-collected: a caller that goes away stops the handler at once.
            async with aclosing(handler(request, scope)) as responses:
                async for response in responses:
                    yield response
        except Exception as exc:
            raise CallFailed(scope.describe(exc)) from None

    def refuse_unknown(self, scope: CallScope) -> CallFailed:
        """The failure of a call to a method nobody serves (UNIMPLEMENTED / METHOD_NOT_FOUND)."""
        return CallFailed(scope.describe(MethodNotFoundError(f"no RPC named {scope.method[:200]!r} is served here")))


def _no_deadline() -> float:
    return 0.0


def _over() -> bool:
    return True


class CallScope(Call):
    """One call's bookkeeping (slot, span, timing, outcome) and its `Call`. Must be created in the task that runs
    the call's code, which it becomes the current call of."""

    __slots__ = (
        "_span_token",
        "code_name",
        "holds_slot",
        "pipeline",
        "reason",
        "route",
        "span",
        "started",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        route: Route,
        path: str,
        metadata: Metadata,
        face: str,
        peer: Callable[[], str] | None,
        time_remaining: Callable[[], float | None] | None,
        cancelled: Callable[[], bool] | None,
    ) -> None:
        if cancelled is None:
            super().__init__(path, metadata, face, peer=peer, time_remaining=time_remaining)
        else:
            super().__init__(path, metadata, face, peer=peer, time_remaining=time_remaining, cancelled=cancelled)
        self.pipeline = pipeline
        self.route = route
        self.started = time.perf_counter()
        # The status name the access log reports; set by `describe` and `finish`.
        self.code_name = "OK"
        self.reason: str | None = None
        self.holds_slot = False
        call_var.set(self)
        self.span = pipeline.tracing.start_call(path, self.request_id, face) if pipeline.tracing else None
        self._span_token = attach(self.span)
        if pipeline.metrics is not None:
            pipeline.metrics.call_started(route.label)

    def acquire_slot(self) -> None:
        """Take a concurrency slot, once (health and reflection are exempt). Raises OverloadedError."""
        if self.holds_slot or self.route.infrastructure:
            return
        if not self.pipeline.limiter.try_acquire():
            raise OverloadedError(
                "the gateway is at its concurrency limit; retry shortly",
                retry_after_seconds=OVERLOAD_RETRY_SECONDS,
            )
        self.holds_slot = True

    def describe(self, exc: BaseException) -> ErrorDescription:
        """How `exc` is reported (`transport/errors.describe`); remembered for the access log, metrics and span."""
        description = describe(exc, self.request_id)
        self.code_name = description.code.name
        self.reason = description.reason
        if self.span is not None:
            self.span.set_status(Status(StatusCode.ERROR, description.reason))
            self.span.set_attribute("rpc.grpc.status_code", description.code.value[0])
        return description

    def finish(self, *, cancelled: bool = False) -> None:
        """Release the slot, record metrics and write the access log line. Call exactly once, in a `finally`.

        The face's sources (grpc's context, connectrpc's request) are let go: grpc frees its call when it ends,
        and reading its peer afterwards would crash the process. A `Call` kept longer answers as a call that is over.
        """
        self._peer_source = None
        self._time_remaining_source = _no_deadline
        self._cancelled_source = _over
        if self.holds_slot:
            self.pipeline.limiter.release()
            self.holds_slot = False
        if cancelled and self.code_name == "OK":
            self.code_name = "CANCELLED"
        seconds = time.perf_counter() - self.started
        if self.pipeline.metrics is not None:
            self.pipeline.metrics.call_finished(self.route.label, self.code_name, self.face, seconds, self.reason)
        if self.span is not None:
            self.span.end()
            detach(self._span_token)
            self.span = None
        if not access_log.isEnabledFor(logging.INFO):
            return
        access_log.info(
            "call",
            extra={
                "method": self.method,
                "code": self.code_name,
                "face": self.face,
                "duration_ms": round(seconds * 1000, 2),
            },
        )

"""The steps every call passes on either face, written once: request id, concurrency limit, decoding check,
auth policy, error description, access log.

Both faces run a call through a `CallScope`: the grpc.aio face from `transport/interceptors.py`, the web face
(Connect + gRPC-Web) from `transport/web/rpc.py`. A face only supplies the call's method, metadata and peer,
and renders the `ErrorDescription` the scope gives it (grpc status + trailers, or a Connect error).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from opentelemetry.trace import Status, StatusCode

from gateway.domain import Principal
from gateway.errors import MalformedRequestError, OverloadedError
from gateway.observability import Metrics, Tracing, attach, detach
from gateway.transport.auth import Authenticator
from gateway.transport.context import REQUEST_ID_HEADER, CallContext, call_var, new_request_id
from gateway.transport.errors import ErrorDescription, describe
from gateway.transport.policy import AuthPolicy, PolicyTable

access_log = logging.getLogger("gateway.access")

OVERLOAD_RETRY_SECONDS = 1.0
UNKNOWN_METHOD = "/unknown/unknown"

Metadata = Sequence[tuple[str, str | bytes]]
Face = Literal["grpc", "web"]


class _Malformed:
    """Stands in for a request whose bytes did not decode."""


MALFORMED = _Malformed()


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


class Pipeline:
    """What both faces share: the policy table, the authenticator and one concurrency limit."""

    def __init__(
        self,
        policies: PolicyTable,
        authenticator: Authenticator,
        limiter: ConcurrencyLimiter,
        *,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.policies = policies
        self.authenticator = authenticator
        self.limiter = limiter
        self.metrics = metrics
        self.tracing = tracing if tracing is not None and tracing.enabled else None
        self._methods: dict[str, MethodInfo] = {}

    def method_info(self, method: str) -> MethodInfo:
        """What the pipeline needs to know of `method`, looked up once per method (a bounded cache)."""
        info = self._methods.get(method)
        if info is None:
            policies = self.policies
            # Metrics label only the contract's methods; anything else is "unknown" (bounded label values).
            info = MethodInfo(
                policies.policy_for(method),
                policies.is_infrastructure(method),
                method if policies.is_known(method) else UNKNOWN_METHOD,
            )
            if policies.is_known(method):
                self._methods[method] = info
        return info

    def begin(
        self,
        method: str,
        metadata: Metadata,
        peer: Callable[[], str],
        face: Face,
        time_remaining: Callable[[], float | None] | None = None,
    ) -> CallScope:
        """Start a call: its scope becomes the current call (no principal yet; the request id is made when read)."""
        return CallScope(self, method, metadata, peer, face, time_remaining)


class MethodInfo:
    """A method's auth policy, whether it is infrastructure (health, reflection) and its metrics label."""

    __slots__ = ("infrastructure", "metric_method", "policy")

    def __init__(self, policy: AuthPolicy, infrastructure: bool, metric_method: str) -> None:
        self.policy = policy
        self.infrastructure = infrastructure
        self.metric_method = metric_method


class CallScope(CallContext):
    """One call's bookkeeping. Must be created in the context (task) that runs the call's code; it is the call's
    `CallContext` for the code the call runs."""

    __slots__ = (
        "_request_id",
        "_span_token",
        "code_name",
        "face",
        "holds_slot",
        "info",
        "metadata",
        "method",
        "metric_method",
        "peer_source",
        "pipeline",
        "principal",
        "reason",
        "span",
        "started",
        "time_remaining_source",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        method: str,
        metadata: Metadata,
        peer: Callable[[], str],
        face: Face,
        time_remaining: Callable[[], float | None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.method = method
        self.metadata = metadata
        self.face = face
        self.started = time.perf_counter()
        # The status name the access log reports; set by `describe` and `finish`.
        self.code_name = "OK"
        self.holds_slot = False
        # Made when first asked for (a failed call, a log line, a span): most calls never need one.
        self._request_id: str | None = None
        self.principal: Principal | None = None
        self.peer_source = peer
        self.time_remaining_source = time_remaining
        call_var.set(self)
        self.reason: str | None = None
        self.span = pipeline.tracing.start_call(method, self.request_id, face) if pipeline.tracing else None
        self._span_token = attach(self.span)
        self.info = info = pipeline.method_info(method)
        self.metric_method = info.metric_method
        if pipeline.metrics is not None:
            pipeline.metrics.call_started(self.metric_method)

    @property
    def request_id(self) -> str:
        """The caller's `x-request-id` when it is short and plain, otherwise a new random one; fixed once read."""
        request_id = self._request_id
        if request_id is None:
            offered = None
            for key, value in self.metadata:
                if key == REQUEST_ID_HEADER and isinstance(value, str):
                    offered = value
                    break
            request_id = self._request_id = new_request_id(offered)
        return request_id

    def acquire_slot(self) -> None:
        """Step 1: take a concurrency slot (health and reflection are exempt). Raises OverloadedError."""
        if self.info.infrastructure:
            return
        if not self.pipeline.limiter.try_acquire():
            raise OverloadedError(
                "the gateway is at its concurrency limit; retry shortly",
                retry_after_seconds=OVERLOAD_RETRY_SECONDS,
            )
        self.holds_slot = True

    def check_decoded(self, request: Any) -> None:
        """Step 2: refuse a request whose bytes did not decode. Raises MalformedRequestError."""
        if request is MALFORMED:
            raise MalformedRequestError("the request message could not be decoded")

    async def authenticate(self) -> None:
        """Step 3: apply the RPC's auth policy; the verified principal (or None) goes into its contextvar."""
        self.principal = await self.pipeline.authenticator.authenticate(self.info.policy, self.metadata)

    async def admit(self, request: Any) -> None:
        """Everything that happens before the RPC's own code, in order: limit, decoding, authentication."""
        self.acquire_slot()
        self.check_decoded(request)
        # A PUBLIC method has nothing to authenticate: no coroutine to run on every such call.
        if self.info.policy is not AuthPolicy.PUBLIC:
            await self.authenticate()

    def describe(self, exc: BaseException) -> ErrorDescription:
        """How `exc` is reported (`transport/errors.describe`); remembered for the access log."""
        description = describe(exc, self.request_id)
        self.code_name = description.code.name
        self.reason = description.reason
        if self.span is not None:
            self.span.set_status(Status(StatusCode.ERROR, description.reason))
            self.span.set_attribute("rpc.grpc.status_code", description.code.value[0])
        return description

    def finish(self, *, cancelled: bool = False) -> None:
        """Release the slot and write the access log line. Call exactly once, in a `finally`."""
        if self.holds_slot:
            self.pipeline.limiter.release()
            self.holds_slot = False
        if cancelled and self.code_name == "OK":
            self.code_name = "CANCELLED"
        seconds = time.perf_counter() - self.started
        if self.pipeline.metrics is not None:
            self.pipeline.metrics.call_finished(self.metric_method, self.code_name, self.face, seconds, self.reason)
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
                "duration_ms": round((time.perf_counter() - self.started) * 1000, 2),
            },
        )

"""The interceptor every call passes: request id, concurrency limit, request decoding, auth policy, errors.

Domain errors raised anywhere in a call, including inside a server stream after it has sent messages, are
turned into a status here and nowhere else (through `transport.errors.describe`).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from gateway.errors import MalformedRequestError, MethodNotFoundError, OverloadedError
from gateway.transport.auth import Authenticator
from gateway.transport.context import (
    REQUEST_ID_HEADER,
    new_request_id,
    peer_source_var,
    principal_var,
    request_id_var,
)
from gateway.transport.errors import describe
from gateway.transport.policy import PolicyTable

log = logging.getLogger(__name__)
access_log = logging.getLogger("gateway.access")

OVERLOAD_RETRY_SECONDS = 1.0


class _Malformed:
    """Stands in for a request whose bytes did not decode."""


MALFORMED = _Malformed()


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return MALFORMED

    return decode


class ConcurrencyLimiter:
    """Counts calls in flight; past the limit new calls are refused at once.

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


Metadata = tuple[tuple[str, str | bytes], ...]


class _Call:
    """The per-call bookkeeping shared by the unary and streaming wrappers."""

    def __init__(self, interceptor: GatewayInterceptor, method: str, context: aio.ServicerContext[Any, Any]) -> None:
        self.interceptor = interceptor
        self.method = method
        self.context = context
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK
        self.holds_slot = False
        self.metadata: Metadata = tuple(context.invocation_metadata() or ())
        offered = next((v for k, v in self.metadata if k == REQUEST_ID_HEADER and isinstance(v, str)), None)
        self.request_id = new_request_id(offered)
        request_id_var.set(self.request_id)
        peer_source_var.set(context.peer)
        principal_var.set(None)

    async def admit(self, request: Any) -> None:
        """Everything that happens before the RPC's own code: limit, decoding, authentication."""
        interceptor = self.interceptor
        if not interceptor.policies.is_infrastructure(self.method):
            if not interceptor.limiter.try_acquire():
                raise OverloadedError(
                    "the gateway is at its concurrency limit; retry shortly",
                    retry_after_seconds=OVERLOAD_RETRY_SECONDS,
                )
            self.holds_slot = True
        if request is MALFORMED:
            raise MalformedRequestError("the request message could not be decoded")
        policy = interceptor.policies.policy_for(self.method)
        principal_var.set(await interceptor.authenticator.authenticate(policy, self.metadata))

    async def fail(self, exc: Exception) -> None:
        """Abort the call with the status that describes `exc` (raises grpc's AbortError)."""
        description = describe(exc, self.request_id)
        self.code = description.code
        await self.context.abort(
            description.code,
            description.message,
            trailing_metadata=((REQUEST_ID_HEADER, self.request_id), *description.trailing_metadata()),
        )

    def finish(self) -> None:
        if self.holds_slot:
            self.interceptor.limiter.release()
        if not access_log.isEnabledFor(logging.INFO):
            return
        if self.code is grpc.StatusCode.OK:
            cancelled = self.context.cancelled() if hasattr(self.context, "cancelled") else False
            code_name = "CANCELLED" if cancelled else "OK"
        else:
            code_name = self.code.name
        access_log.info(
            "call",
            extra={
                "method": self.method,
                "code": code_name,
                "duration_ms": round((time.perf_counter() - self.started) * 1000, 2),
            },
        )


class GatewayInterceptor(aio.ServerInterceptor):
    """Wraps every RPC handler of the server (see the module docstring)."""

    def __init__(self, policies: PolicyTable, authenticator: Authenticator, limiter: ConcurrencyLimiter) -> None:
        self.policies = policies
        self.authenticator = authenticator
        self.limiter = limiter
        # Wrapped handlers by method: built once, not on every call.
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            return self._unknown_method(method)
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner = handler.unary_stream
            wrapped = (
                self._wrap_stream(method, inner)
                if inspect.isasyncgenfunction(inner)
                else self._wrap_unary(method, inner)
            )
            return grpc.unary_stream_rpc_method_handler(
                wrapped,
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        # Client-streaming and bidirectional RPCs: only server reflection, which is public infrastructure.
        return handler

    def _wrap_unary(self, method: str, inner: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def behavior(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            call = _Call(self, method, context)
            try:
                await call.admit(request)
                return await inner(request, context)
            except aio.AbortError:
                raise
            except Exception as exc:
                await call.fail(exc)
            finally:
                call.finish()

        return behavior

    def _wrap_stream(self, method: str, inner: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        async def behavior(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            call = _Call(self, method, context)
            try:
                await call.admit(request)
                async for response in inner(request, context):
                    yield response
            except aio.AbortError:
                raise
            except Exception as exc:
                await call.fail(exc)
            finally:
                call.finish()

        return behavior

    def _unknown_method(self, method: str) -> grpc.RpcMethodHandler[Any, Any]:
        async def behavior(request_iterator: Any, context: aio.ServicerContext[Any, Any]) -> None:
            call = _Call(self, method, context)
            try:
                await call.fail(MethodNotFoundError(f"no RPC named {method[:200]!r} is served here"))
            finally:
                call.finish()

        return grpc.stream_stream_rpc_method_handler(behavior)

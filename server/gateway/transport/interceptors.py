"""The grpc.aio face of the call pipeline: one interceptor wraps every handler of the server.

The steps themselves (request id, concurrency limit, decoding check, auth policy, error description, access
log) live in `transport/pipeline.py`, shared with the web face; this module only adapts them to grpc.aio.
Domain errors raised anywhere in a call, including inside a server stream after it has sent messages, are
turned into a status here (through the pipeline's `describe`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from gateway.errors import MethodNotFoundError
from gateway.transport.auth import Authenticator
from gateway.transport.context import REQUEST_ID_HEADER
from gateway.transport.pipeline import MALFORMED, CallScope, ConcurrencyLimiter, Metadata, Pipeline
from gateway.transport.policy import PolicyTable

__all__ = ["ConcurrencyLimiter", "GatewayInterceptor"]

log = logging.getLogger(__name__)


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return MALFORMED

    return decode


class _Call:
    """A pipeline call scope bound to a grpc.aio servicer context."""

    def __init__(self, pipeline: Pipeline, method: str, context: aio.ServicerContext[Any, Any]) -> None:
        self.context = context
        metadata: Metadata = tuple(context.invocation_metadata() or ())
        self.scope: CallScope = pipeline.begin(method, metadata, context.peer, "grpc", context.time_remaining)

    async def fail(self, exc: Exception) -> None:
        """Abort the call with the status that describes `exc` (raises grpc's AbortError)."""
        description = self.scope.describe(exc)
        await self.context.abort(
            description.code,
            description.message,
            trailing_metadata=((REQUEST_ID_HEADER, self.scope.request_id), *description.trailing_metadata()),
        )

    def finish(self) -> None:
        cancelled = self.context.cancelled() if hasattr(self.context, "cancelled") else False
        self.scope.finish(cancelled=cancelled)


class GatewayInterceptor(aio.ServerInterceptor):
    """Wraps every RPC handler of the grpc.aio server (see the module docstring)."""

    def __init__(self, policies: PolicyTable, authenticator: Authenticator, limiter: ConcurrencyLimiter) -> None:
        self.pipeline = Pipeline(policies, authenticator, limiter)
        # Wrapped handlers by method: built once, not on every call.
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    @classmethod
    def for_pipeline(cls, pipeline: Pipeline) -> GatewayInterceptor:
        """An interceptor running an existing pipeline (shared with the web face, metrics and tracing)."""
        interceptor = cls(pipeline.policies, pipeline.authenticator, pipeline.limiter)
        interceptor.pipeline = pipeline
        return interceptor

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
            call = _Call(self.pipeline, method, context)
            try:
                await call.scope.admit(request)
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
            call = _Call(self.pipeline, method, context)
            try:
                await call.scope.admit(request)
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
            call = _Call(self.pipeline, method, context)
            try:
                await call.fail(MethodNotFoundError(f"no RPC named {method[:200]!r} is served here"))
            finally:
                call.finish()

        return grpc.stream_stream_rpc_method_handler(behavior)

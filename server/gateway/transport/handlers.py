"""The grpc.aio face of the call pipeline: every handler the server serves is wrapped once, when it is registered.

The steps themselves (request id, concurrency limit, decoding check, auth policy, error description, access
log) live in `transport/pipeline.py`, shared with the web face; this module only adapts them to grpc.aio.
Domain errors raised anywhere in a call, including inside a server stream after it has sent messages, are
turned into a status here (through the pipeline's `describe`).

Why not a `grpc.aio.ServerInterceptor`: grpc.aio runs the interceptor chain as coroutines on every call before
it even looks the handler up, which cost a measurable share of a small unary call (docs/performance.md).
Registering wrapped handlers gives every call the same steps with no per-call lookup. The server is used only
through `GrpcFace.registrar(server)`, an `aio.Server` that wraps what servicers register and, when it starts,
adds the catch-all that answers unknown methods with the contract's METHOD_NOT_FOUND. Keep no other reference
to the inner server: a handler registered on it directly would bypass the pipeline (and its auth policy).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from gateway.errors import MethodNotFoundError
from gateway.transport.context import REQUEST_ID_HEADER
from gateway.transport.pipeline import MALFORMED, CallScope, Metadata, Pipeline

__all__ = ["GrpcFace", "Registrar"]

if TYPE_CHECKING:  # generic only in the type stubs
    Handler = grpc.RpcMethodHandler[Any, Any]
    Context = aio.ServicerContext[Any, Any]


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that hands the pipeline a marker instead of raising (MALFORMED_REQUEST, not INTERNAL)."""
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return MALFORMED

    return decode


async def _fail(scope: CallScope, context: Context, exc: Exception) -> None:
    """Abort the call with the status that describes `exc` (raises grpc's AbortError)."""
    description = scope.describe(exc)
    await context.abort(
        description.code,
        description.message,
        trailing_metadata=((REQUEST_ID_HEADER, scope.request_id), *description.trailing_metadata()),
    )


def _begin(pipeline: Pipeline, method: str, context: Context) -> CallScope:
    # A tuple already (tuple() returns it as it is); typed as grpc's broader metadata type.
    metadata: Metadata = tuple(context.invocation_metadata() or ())
    return pipeline.begin(method, metadata, context.peer, "grpc", context.time_remaining)


class GrpcFace:
    """Wraps grpc.aio handlers in the call pipeline (see the module docstring)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        # One wrapper per method, whether it arrives as a registered or as a generic handler.
        self._wrapped: dict[str, Handler] = {}

    def registrar(self, server: aio.Server) -> Registrar:
        """`server` as the gateway uses it: register servicers, bind ports, start and stop through this."""
        return Registrar(self, server)

    def wrap(self, method: str, handler: Handler) -> Handler:
        """`handler` behind the pipeline, built once per method."""
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = self._build(method, handler)
        return wrapped

    def _build(self, method: str, handler: Handler) -> Handler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner = handler.unary_stream
            behavior = self._stream(method, inner) if inspect.isasyncgenfunction(inner) else self._unary(method, inner)
            return grpc.unary_stream_rpc_method_handler(
                behavior,
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        # Client-streaming and bidirectional RPCs: only server reflection, which is public infrastructure.
        return handler

    def _unary(self, method: str, inner: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        pipeline = self.pipeline

        async def behavior(request: Any, context: Context) -> Any:
            scope = _begin(pipeline, method, context)
            try:
                await scope.admit(request)
                return await inner(request, context)
            except aio.AbortError:
                raise
            except Exception as exc:
                await _fail(scope, context, exc)
            finally:
                scope.finish(cancelled=context.cancelled())

        return behavior

    def _stream(self, method: str, inner: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        pipeline = self.pipeline

        async def behavior(request: Any, context: Context) -> AsyncIterator[Any]:
            scope = _begin(pipeline, method, context)
            try:
                await scope.admit(request)
                async for response in inner(request, context):
                    yield response
            except aio.AbortError:
                raise
            except Exception as exc:
                await _fail(scope, context, exc)
            finally:
                scope.finish(cancelled=context.cancelled())

        return behavior

    def unknown_method(self, method: str) -> Handler:
        """A handler that answers `method` with UNIMPLEMENTED / METHOD_NOT_FOUND (through the pipeline)."""
        pipeline = self.pipeline

        async def behavior(request_iterator: Any, context: Context) -> None:
            scope = _begin(pipeline, method, context)
            try:
                await _fail(scope, context, MethodNotFoundError(f"no RPC named {method[:200]!r} is served here"))
            finally:
                scope.finish()

        return grpc.stream_stream_rpc_method_handler(behavior)


class Registrar(aio.Server):
    """A grpc.aio server whose every handler runs behind the call pipeline.

    It is an `aio.Server` (generated `add_*_to_server` functions and `enable_server_reflection` accept it).
    Registration wraps each handler; `start` first adds the catch-all for unknown methods, after everything
    registered (grpc takes registrations only before the start); the rest goes straight to the inner server.
    """

    def __init__(self, face: GrpcFace, server: aio.Server) -> None:
        self._face = face
        self._server = server

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        """Register generic handlers whose handlers run behind the pipeline."""
        self._server.add_generic_rpc_handlers(tuple(_Wrapped(self._face, h) for h in generic_rpc_handlers))

    def add_registered_method_handlers(self, service_name: str, method_handlers: Mapping[str, Handler]) -> None:
        """Register pre-registered methods (grpc's fast path, no generic lookup) behind the pipeline."""
        self._server.add_registered_method_handlers(
            service_name,
            {name: self._face.wrap(f"/{service_name}/{name}", h) for name, h in method_handlers.items()},
        )

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        self._server.add_generic_rpc_handlers((_UnknownMethods(self._face),))
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (grpc's API)
        return await self._server.wait_for_termination(timeout)


class _Wrapped(grpc.GenericRpcHandler):
    """A generic handler whose answers are wrapped (once per method)."""

    def __init__(self, face: GrpcFace, inner: grpc.GenericRpcHandler) -> None:
        self._face = face
        self._inner = inner

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        return self._face.wrap(handler_call_details.method, handler)


class _UnknownMethods(grpc.GenericRpcHandler):
    """The catch-all after every registered service."""

    def __init__(self, face: GrpcFace) -> None:
        self._face = face

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        return self._face.unknown_method(handler_call_details.method)

"""The grpc.aio face: the handler table mounted on a grpc.aio server, every call run through the call pipeline.

Each method of the table becomes one pre-registered grpc method handler, built once when the face mounts it: it
opens the call's scope from grpc's context, runs the pipeline, and renders a failure as a status with the
`google.rpc.Status` in `grpc-status-details-bin`, including inside a server stream after messages were sent.

Health and reflection are grpc's own servicers; they register through `GrpcFace.server`, an `aio.Server` that
wraps what they register in the same pipeline (PUBLIC, exempt from the concurrency limit) and, when it starts,
adds the catch-all that answers unknown methods with the contract's METHOD_NOT_FOUND. The gateway keeps no other
handle on the inner server, so nothing can be registered around the pipeline (or its auth policy).

Why handlers and not a `grpc.aio.ServerInterceptor`: grpc.aio runs the interceptor chain as coroutines on every
call before it even looks the handler up, a measurable share of a small unary call (docs/performance.md).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from gateway.calls import Call
from gateway.transport.errors import ErrorDescription
from gateway.transport.pipeline import MALFORMED, REQUEST_ID_HEADER, CallFailed, CallScope, Pipeline, Route
from gateway.transport.policy import INFRASTRUCTURE_SERVICES, AuthPolicy
from gateway.transport.table import HandlerTable, Method, StreamHandler, UnaryHandler

__all__ = ["GrpcFace", "GrpcServer"]

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


class _MetadataValueRedaction(logging.Filter):
    """Keeps metadata values out of grpc's own log lines.

    grpc's Cython layer logs a metadata value that is not UTF-8 in full, at ERROR with a traceback ("Invalid
    encoding on b'Bearer eyJ...'"): an authorization header with one stray byte would put the bearer token in the
    log. The line stays (something odd reached the server), with each bytes value replaced by its length.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(arg, bytes | bytearray) for arg in args):
            record.args = tuple(
                f"<{len(arg)} bytes, not shown>" if isinstance(arg, bytes | bytearray) else arg for arg in args
            )
            # The traceback's exception holds the same bytes.
            record.exc_info = None
            record.exc_text = None
        return True


GRPC_CYTHON_LOGGER = "grpc._cython.cygrpc"


def _redact_grpc_logs() -> None:
    """Install the redaction on grpc's Cython logger, once per process."""
    logger = logging.getLogger(GRPC_CYTHON_LOGGER)
    if not any(isinstance(existing, _MetadataValueRedaction) for existing in logger.filters):
        logger.addFilter(_MetadataValueRedaction())


class _Answered(BaseException):
    """A grpc servicer ended its call itself (`context.abort`): the status is sent; the pipeline passes it by."""


async def _abort(scope: CallScope, context: Context, description: ErrorDescription) -> None:
    """End the call with the status that `description` gives (raises grpc's AbortError)."""
    await context.abort(
        description.code,
        description.message,
        trailing_metadata=((REQUEST_ID_HEADER, scope.request_id), *description.trailing_metadata()),
    )


class GrpcFace:
    """Mounts the handler table (and grpc's infrastructure servicers) behind the pipeline on grpc.aio."""

    def __init__(self, pipeline: Pipeline, table: HandlerTable) -> None:
        _redact_grpc_logs()
        self.pipeline = pipeline
        self.table = table
        # One wrapper per servicer method, whether it arrives as a registered or as a generic handler.
        self._wrapped: dict[str, Handler] = {}

    def server(self, server: aio.Server) -> GrpcServer:
        """`server` with the table mounted: register infrastructure, bind, start and stop through what this returns."""
        by_service: dict[str, dict[str, Handler]] = {}
        for method in self.table:
            by_service.setdefault(method.service, {})[method.name] = self.handler(method)
        for service, handlers in by_service.items():
            server.add_registered_method_handlers(service, handlers)
        return GrpcServer(self, server)

    def _begin(self, route: Route, path: str, context: Context) -> CallScope:
        # A tuple already (tuple() returns it as it is); typed as grpc's broader metadata type.
        metadata = tuple(context.invocation_metadata() or ())
        return self.pipeline.begin(
            route,
            path,
            metadata,
            "grpc",
            peer=context.peer,
            time_remaining=context.time_remaining,
            cancelled=context.cancelled,
        )

    def handler(self, method: Method) -> Handler:
        """The grpc method handler of a table method: the pipeline around `method.handler`."""
        decode = _lenient(method.request_type.FromString)
        encode = method.response_type.SerializeToString
        route = Pipeline.route(method)
        handler = method.handler
        if method.server_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(route, lambda _: handler), request_deserializer=decode, response_serializer=encode
            )
        return grpc.unary_unary_rpc_method_handler(
            self._unary(route, lambda _: handler), request_deserializer=decode, response_serializer=encode
        )

    def _unary(self, route: Route, bind: Callable[[Context], UnaryHandler]) -> Callable[..., Awaitable[Any]]:
        """A grpc unary behavior: the pipeline around the handler `bind` gives for the call's grpc context."""
        run = self.pipeline.unary
        begin = self._begin
        path = route.path

        async def behavior(request: Any, context: Context) -> Any:
            scope = begin(route, path, context)
            try:
                return await run(bind(context), request, scope)
            except CallFailed as failed:
                await _abort(scope, context, failed.description)
            except _Answered:
                raise aio.AbortError() from None
            finally:
                scope.finish(cancelled=context.cancelled())

        return behavior

    def _stream(self, route: Route, bind: Callable[[Context], StreamHandler]) -> Callable[..., AsyncIterator[Any]]:
        """A grpc server-streaming behavior, like `_unary`."""
        run = self.pipeline.stream
        begin = self._begin
        path = route.path

        async def behavior(request: Any, context: Context) -> AsyncIterator[Any]:
            scope = begin(route, path, context)
            try:
                async for response in run(bind(context), request, scope):
                    yield response
            except CallFailed as failed:
                await _abort(scope, context, failed.description)
            except _Answered:
                raise aio.AbortError() from None
            finally:
                scope.finish(cancelled=context.cancelled())

        return behavior

    def wrap_servicer(self, path: str, handler: Handler) -> Handler:
        """A handler of a grpc servicer (health, reflection) behind the pipeline, built once per method.

        Health and reflection are PUBLIC and exempt from the concurrency limit; any other method registered this
        way is REQUIRED (deny by default): only the handler table's methods take their policy from the contract.
        """
        wrapped = self._wrapped.get(path)
        if wrapped is None:
            wrapped = self._wrapped[path] = self._build_servicer(path, handler)
        return wrapped

    def _build_servicer(self, path: str, handler: Handler) -> Handler:
        # grpc's servicers answer (request, context): each call's handler closes over its own context.
        service = path.strip("/").partition("/")[0]
        route = (
            Pipeline.infrastructure_route(path)
            if service in INFRASTRUCTURE_SERVICES
            else Route(path, AuthPolicy.REQUIRED)
        )
        decode = _lenient(handler.request_deserializer)
        encode = handler.response_serializer
        servicer_unary = handler.unary_unary or handler.unary_stream
        if servicer_unary is not None and not inspect.isasyncgenfunction(servicer_unary):
            # A unary method, or a stream written with `context.write` (health's Watch) that returns when done.

            def bind_unary(context: Context) -> UnaryHandler:
                async def answer(request: Any, call: Call) -> Any:
                    try:
                        return await servicer_unary(request, context)  # type: ignore[arg-type, misc]  # grpc.aio's
                    except aio.AbortError:
                        raise _Answered from None

                return answer

            make = grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.unary_stream_rpc_method_handler
            return make(self._unary(route, bind_unary), request_deserializer=decode, response_serializer=encode)
        if handler.unary_stream is not None:
            servicer_stream = handler.unary_stream

            def bind_stream(context: Context) -> StreamHandler:
                async def answer(request: Any, call: Call) -> AsyncGenerator[Any, None]:
                    # grpc's stubs type servicer streams as sync iterators; grpc.aio's are async generators.
                    try:
                        async for response in servicer_stream(request, context):  # type: ignore[arg-type, attr-defined]
                            yield response
                    except aio.AbortError:
                        raise _Answered from None

                return answer

            return grpc.unary_stream_rpc_method_handler(
                self._stream(route, bind_stream), request_deserializer=decode, response_serializer=encode
            )
        # Client-streaming and bidirectional: only server reflection, public infrastructure with no auth step.
        return handler

    def unknown_method(self, path: str) -> Handler:
        """A handler that answers `path` with UNIMPLEMENTED / METHOD_NOT_FOUND (through the pipeline)."""
        pipeline = self.pipeline

        async def behavior(request_iterator: Any, context: Context) -> None:
            scope = self._begin(pipeline.unknown, path, context)
            try:
                await _abort(scope, context, pipeline.refuse_unknown(scope).description)
            finally:
                scope.finish()

        return grpc.stream_stream_rpc_method_handler(behavior)


class GrpcServer(aio.Server):
    """A grpc.aio server whose every handler runs behind the call pipeline.

    It is an `aio.Server` (generated `add_*_to_server` functions and `enable_server_reflection` accept it), used
    for the infrastructure servicers: registration wraps each of their handlers; `start` first adds the catch-all
    for unknown methods, after everything registered (grpc takes registrations only before the start).
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
            {name: self._face.wrap_servicer(f"/{service_name}/{name}", h) for name, h in method_handlers.items()},
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
        return self._face.wrap_servicer(handler_call_details.method, handler)


class _UnknownMethods(grpc.GenericRpcHandler):
    """The catch-all after every registered service."""

    def __init__(self, face: GrpcFace) -> None:
        self._face = face

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        return self._face.unknown_method(handler_call_details.method)

"""The web face: the handler table over Connect and gRPC-Web, as one connectrpc ASGI application.

Built in one loop over the table: each method becomes a connectrpc endpoint whose function runs the shared call
pipeline (`transport/pipeline.py`) and renders a failure as a Connect error carrying the same `google.rpc`
details as the gRPC face. A leading metadata interceptor opens the call's scope and takes its concurrency slot
before the body is read, and turns connectrpc's own failures (an undecodable body) into the contract's reasons.
Paths outside the table get METHOD_NOT_FOUND in the caller's protocol.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Any

import grpc
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_codecs
from connectrpc.errors import ConnectError, ErrorDetail
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from google.protobuf import empty_pb2
from protobuf.wkt import Any as WireAny

from gateway.calls import call_var
from gateway.errors import MalformedRequestError, MethodNotFoundError
from gateway.transport.errors import ErrorDescription
from gateway.transport.pipeline import REQUEST_ID_HEADER, CallFailed, CallScope, Pipeline, Route
from gateway.transport.table import HandlerTable, Method

__all__ = ["WebFace", "connect_error", "grpc_peer"]

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

# The service name of the stand-in method that answers paths outside the table.
_UNKNOWN_SERVICE = "unknown"
_unknown_path_var: contextvars.ContextVar[str] = contextvars.ContextVar("web_unknown_path", default="")

# grpc and Connect name the same codes; Connect spells CANCELLED with one L.
CODE_BY_STATUS: dict[grpc.StatusCode, Code] = {
    status: Code.CANCELED if status is grpc.StatusCode.CANCELLED else Code[status.name]
    for status in grpc.StatusCode
    if status is not grpc.StatusCode.OK
}
STATUS_BY_CODE = {code: status for status, code in CODE_BY_STATUS.items()}


class RenderedError(ConnectError):
    """A failure already described by the pipeline: its code, message and `google.rpc` details are final."""


def connect_error(description: ErrorDescription) -> RenderedError:
    """The Connect rendering of a failure: same code, message, ErrorInfo, RetryInfo and BadRequest as gRPC."""
    # connectrpc serialises details with its own protobuf runtime, so each google.protobuf Any is re-wrapped.
    details = [ErrorDetail(WireAny(type_url=item.type_url, value=item.value)) for item in description.details()]
    return RenderedError(CODE_BY_STATUS[description.code], description.message, details)


def grpc_peer(client_address: str | None) -> str:
    """The caller's address in grpc's spelling ("ipv4:127.0.0.1:53422"), so rate limits key both faces alike."""
    if not client_address:
        return ""
    host, _, port = client_address.rpartition(":")
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _current_scope() -> CallScope:
    scope = call_var.get()
    assert isinstance(scope, CallScope)  # opened by _CallScopeInterceptor.on_start in this task
    return scope


class _CallScopeInterceptor:
    """Opens the call's scope and takes its concurrency slot before the request body is read; renders the outcome
    when the call ends (connectrpc's own failures, such as an undecodable body, in the contract's terms)."""

    def __init__(self, pipeline: Pipeline, routes: Mapping[str, Route]) -> None:
        self._pipeline = pipeline
        self._routes = routes

    async def on_start(self, ctx: RequestContext[Any, Any]) -> CallScope:
        known = ctx.method.service_name != _UNKNOWN_SERVICE
        path = f"/{ctx.method.service_name}/{ctx.method.name}" if known else _unknown_path_var.get()
        route = self._routes[path] if known else self._pipeline.unknown
        client_address = ctx.client_address

        def time_remaining() -> float | None:
            remaining_ms = ctx.timeout_ms
            return None if remaining_ms is None else max(remaining_ms / 1000, 0.0)

        scope = self._pipeline.begin(
            route,
            path,
            tuple(ctx.request_headers.allitems()),
            "web",
            peer=lambda: grpc_peer(client_address),
            time_remaining=time_remaining,
        )
        ctx.response_headers[REQUEST_ID_HEADER] = scope.request_id
        try:
            if not known:
                raise self._pipeline.refuse_unknown(scope)
            scope.acquire_slot()
        except CallFailed as failed:
            # connectrpc does not end an interceptor whose start failed: finish the scope here.
            scope.finish()
            raise connect_error(failed.description) from None
        except Exception as exc:
            error = connect_error(scope.describe(exc))
            scope.finish()
            raise error from None
        return scope

    async def on_end(self, scope: CallScope, ctx: RequestContext[Any, Any], error: Exception | None) -> None:
        try:
            if error is None or isinstance(error, RenderedError):
                return
            if isinstance(error, ConnectError):
                if error.code is Code.INVALID_ARGUMENT:
                    # connectrpc's own INVALID_ARGUMENT: the request could not be read (body, GET query, timeout).
                    malformed = MalformedRequestError("the request message could not be decoded")
                    raise connect_error(scope.describe(malformed)) from None
                # Cancelled by the client, deadline exceeded, protocol errors: connectrpc's own answer stands.
                scope.code_name = "CANCELLED" if error.code is Code.CANCELED else STATUS_BY_CODE[error.code].name
                return
            raise connect_error(scope.describe(error)) from None
        finally:
            scope.finish()


def _unary_endpoint(pipeline: Pipeline, method: Method) -> Endpoint[Any, Any]:
    run = pipeline.unary
    handler = method.handler

    async def function(request: Any, ctx: RequestContext[Any, Any]) -> Any:
        try:
            return await run(handler, request, _current_scope())
        except CallFailed as failed:
            raise connect_error(failed.description) from None

    return Endpoint.unary(method=_method_info(method), function=function)


def _stream_endpoint(pipeline: Pipeline, method: Method) -> Endpoint[Any, Any]:
    run = pipeline.stream
    handler = method.handler

    async def function(request: Any, ctx: RequestContext[Any, Any]) -> AsyncGenerator[Any, None]:
        try:
            # Closed here: connectrpc closes this generator, which must close the pipeline's (and the handler's).
            async with aclosing(run(handler, request, _current_scope())) as responses:
                async for response in responses:
                    yield response
        except CallFailed as failed:
            raise connect_error(failed.description) from None

    return Endpoint.server_stream(method=_method_info(method), function=function)


def _method_info(method: Method) -> MethodInfo[Any, Any]:
    return MethodInfo(
        name=method.name,
        service_name=method.service,
        input=method.request_type,
        output=method.response_type,
        idempotency_level=IdempotencyLevel.UNKNOWN,
        stream_type=StreamType.SERVER_STREAM if method.server_streaming else StreamType.UNARY,
    )


class _TableApp(ConnectASGIApplication[HandlerTable]):
    """Every method of the handler table as one connectrpc application (Connect and gRPC-Web)."""

    def __init__(self, pipeline: Pipeline, table: HandlerTable) -> None:
        routes = {method.path: Pipeline.route(method) for method in table}
        # Typed loosely: connectrpc's precise endpoint union is private.
        endpoints: dict[str, Any] = {
            method.path: (_stream_endpoint if method.server_streaming else _unary_endpoint)(pipeline, method)
            for method in table
        }
        super().__init__(
            service=table,
            endpoints=lambda _: endpoints,
            interceptors=[_CallScopeInterceptor(pipeline, routes)],
            codecs=google_protobuf_codecs(),
        )

    @property
    def path(self) -> str:
        return "/"


class _AnyPath(dict[str, Any]):
    """An endpoint table that answers every path with one endpoint."""

    def __init__(self, endpoint: Any) -> None:
        super().__init__()
        self._endpoint = endpoint

    def get(self, key: str, default: Any = None) -> Any:
        return self._endpoint


async def _refuse(request: empty_pb2.Empty, ctx: RequestContext[Any, Any]) -> empty_pb2.Empty:
    raise MethodNotFoundError("no such RPC")  # never reached: the scope refuses the call first


async def _refuse_stream(request: empty_pb2.Empty, ctx: RequestContext[Any, Any]) -> AsyncIterator[empty_pb2.Empty]:
    raise MethodNotFoundError("no such RPC")  # never reached: the scope refuses the call first
    yield empty_pb2.Empty()  # type: ignore[unreachable]  # makes this an async generator


class _UnknownMethodApp(ConnectASGIApplication[None]):
    """Answers any path with UNIMPLEMENTED / METHOD_NOT_FOUND, rendered per protocol like every other error."""

    def __init__(self, pipeline: Pipeline, *, stream: bool) -> None:
        method = MethodInfo(
            name="Unknown",
            service_name=_UNKNOWN_SERVICE,
            input=empty_pb2.Empty,
            output=empty_pb2.Empty,
            idempotency_level=IdempotencyLevel.UNKNOWN,
            stream_type=StreamType.SERVER_STREAM if stream else StreamType.UNARY,
        )
        endpoint: Any = (
            Endpoint.server_stream(method=method, function=_refuse_stream)
            if stream
            else Endpoint.unary(method=method, function=_refuse)
        )
        super().__init__(
            service=None,
            endpoints=lambda _: _AnyPath(endpoint),
            interceptors=[_CallScopeInterceptor(pipeline, {})],
            codecs=google_protobuf_codecs(),
        )

    @property
    def path(self) -> str:
        return "/"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        _unknown_path_var.set(scope.get("path", ""))
        await super().__call__(scope, receive, send)


def _connect_unary(content_type: str) -> bool:
    return content_type.startswith(("application/proto", "application/json"))


class WebFace:
    """Routes RPC paths ("/package.Service/Method") of the handler table to connectrpc, through the pipeline."""

    def __init__(self, pipeline: Pipeline, table: HandlerTable) -> None:
        self._app = _TableApp(pipeline, table)
        self.methods = frozenset(table.methods)
        self._unknown_unary = _UnknownMethodApp(pipeline, stream=False)
        self._unknown_stream = _UnknownMethodApp(pipeline, stream=True)

    @staticmethod
    def is_rpc_path(path: str) -> bool:
        """True for "/package.Service/Method": what Connect and gRPC-Web clients call."""
        parts = path.split("/")
        return len(parts) == 3 and "." in parts[1] and bool(parts[2])

    def app_for(self, path: str, content_type: str) -> ASGIApp:
        """The app for an RPC path; unknown methods get the METHOD_NOT_FOUND answer in the caller's protocol."""
        if path in self.methods:
            return self._app
        return self._unknown_unary if _connect_unary(content_type) else self._unknown_stream

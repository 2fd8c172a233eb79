"""The web face: the handler table over Connect and gRPC-Web, as one connectrpc ASGI application.

Built in one loop over the table: each method becomes a connectrpc endpoint whose function runs the shared call
pipeline (`transport/pipeline.py`) and renders a failure as a Connect error carrying the same `google.rpc`
details as the gRPC face. A leading metadata interceptor opens the call's scope and takes its concurrency slot
before the body is read, and turns connectrpc's own failures (an undecodable body) into the contract's reasons.
Paths outside the table get METHOD_NOT_FOUND in the caller's protocol.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
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
from starlette.types import Receive, Scope, Send

from gateway.calls import call_var
from gateway.errors import GatewayError, MalformedRequestError, MethodNotFoundError, TokenMalformedError
from gateway.transport.errors import ErrorDescription
from gateway.transport.pipeline import REQUEST_ID_HEADER, CallFailed, CallScope, Pipeline, Route
from gateway.transport.table import HandlerTable, Method

__all__ = ["WebFace", "connect_error", "grpc_peer"]

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

# The service name of the stand-in method that answers the calls refused before connectrpc may read them: paths
# outside the table, and requests with header bytes that are not UTF-8.
_REFUSED_SERVICE = "refused"
# The path a refused call asked for and why it is refused (None: no such method).
_refusal_var: contextvars.ContextVar[tuple[str, GatewayError | None]] = contextvars.ContextVar(
    "web_refusal", default=("", None)
)

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


# connectrpc's answers that are about the caller, not the request: they stand as they are.
_CALLER_ENDED = frozenset({Code.CANCELED, Code.DEADLINE_EXCEEDED})


def _malformed_message(error: ConnectError) -> str:
    """What to tell a caller whose request connectrpc could not read (its own words when they are specific)."""
    said = str(error.message or "")
    if error.code is Code.INVALID_ARGUMENT or not said:
        return "the request message could not be decoded"
    return f"the request could not be read: {said[:200]}"


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
        refused = ctx.method.service_name == _REFUSED_SERVICE
        if refused:
            path, refusal = _refusal_var.get()
            route = self._routes.get(path, self._pipeline.unknown)
        else:
            path, refusal = f"/{ctx.method.service_name}/{ctx.method.name}", None
            route = self._routes[path]
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
            if refused:
                raise refusal if refusal is not None else self._pipeline.refuse_unknown(scope)
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
                if error.code in _CALLER_ENDED:
                    # The caller went away or its deadline passed: connectrpc's own answer stands.
                    scope.code_name = "CANCELLED" if error.code is Code.CANCELED else STATUS_BY_CODE[error.code].name
                    return
                # connectrpc could not read the request: undecodable bytes, a broken envelope, no message or two
                # on a unary call, a compressed message without compression. All are the caller's malformed
                # request, answered with the contract's reason like every other error.
                malformed = MalformedRequestError(_malformed_message(error))
                raise connect_error(scope.describe(malformed)) from None
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

    def __init__(self, pipeline: Pipeline, table: HandlerTable, routes: Mapping[str, Route]) -> None:
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


class _RefusalApp(ConnectASGIApplication[None]):
    """Answers any path with the refusal in `_refusal_var` (METHOD_NOT_FOUND by default), rendered per protocol like
    every other error, through the pipeline (request id, access log, metrics)."""

    def __init__(self, pipeline: Pipeline, routes: Mapping[str, Route], *, stream: bool) -> None:
        method = MethodInfo(
            name="Unknown",
            service_name=_REFUSED_SERVICE,
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
            interceptors=[_CallScopeInterceptor(pipeline, routes)],
            codecs=google_protobuf_codecs(),
        )

    @property
    def path(self) -> str:
        return "/"


def _connect_unary(content_type: str) -> bool:
    return content_type.startswith(("application/proto", "application/json"))


def _undecodable(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """The names of the headers whose value is not UTF-8 (connectrpc would fail on them with HTTP 500)."""
    bad: set[bytes] = set()
    for name, value in headers:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            bad.add(bytes(name).lower())
    return bad


class WebFace:
    """Serves RPC paths ("/package.Service/Method") of the handler table through connectrpc and the pipeline."""

    def __init__(self, pipeline: Pipeline, table: HandlerTable) -> None:
        routes = {method.path: Pipeline.route(method) for method in table}
        self._app = _TableApp(pipeline, table, routes)
        self.methods = frozenset(table.methods)
        self._refuse_unary = _RefusalApp(pipeline, routes, stream=False)
        self._refuse_stream = _RefusalApp(pipeline, routes, stream=True)

    @staticmethod
    def is_rpc_path(path: str) -> bool:
        """True for "/package.Service/Method": what Connect and gRPC-Web clients call."""
        parts = path.split("/")
        return len(parts) == 3 and "." in parts[1] and bool(parts[2])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one RPC request; refuse it in the caller's protocol if it names no method of the table or carries
        header bytes that are not UTF-8 (an authorization header: TOKEN_MALFORMED; any other: MALFORMED_REQUEST)."""
        path: str = scope["path"]
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
        bad = _undecodable(headers)
        refusal: GatewayError | None = None
        if bad:
            if b"authorization" in bad:
                refusal = TokenMalformedError('the authorization header must be "Bearer <access token>" in UTF-8')
            else:
                names = ", ".join(sorted(name.decode("latin-1") for name in bad))
                refusal = MalformedRequestError(f"request headers must be UTF-8 text ({names[:200]} are not)")
            # What is left can be read: the refusal is rendered in the caller's protocol like any other error.
            scope = {**scope, "headers": [(name, value) for name, value in headers if name.lower() not in bad]}
        elif path in self.methods:
            await self._app(scope, receive, send)
            return
        content_type = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"content-type"), "")
        _refusal_var.set((path, refusal))
        app = self._refuse_unary if _connect_unary(content_type) else self._refuse_stream
        await app(scope, receive, send)

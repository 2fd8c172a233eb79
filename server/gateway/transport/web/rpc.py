"""The contract's services over Connect and gRPC-Web: connectrpc ASGI apps that run the shared call pipeline and
call the same servicers as the grpc.aio face.

Per call: a leading metadata interceptor opens the pipeline's `CallScope` before the body is read (request id,
concurrency limit) and, at the end, renders any failure as a Connect error carrying the same `google.rpc`
details as the gRPC face; a message interceptor runs the auth policy once the request has decoded. The servicer
methods are the grpc.aio ones, called with a `WebServicerContext`.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Never, TypeVar

import grpc
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_codecs
from connectrpc.errors import ConnectError, ErrorDetail
from connectrpc.interceptor import Interceptor
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from google.protobuf import empty_pb2
from grpc import aio
from protobuf.wkt import Any as WireAny

from booking.v1 import (
    auth_connect,
    auth_pb2,
    chat_connect,
    chat_pb2,
    reservations_connect,
    reservations_pb2,
)
from gateway.errors import MalformedRequestError, MethodNotFoundError
from gateway.transport.context import REQUEST_ID_HEADER
from gateway.transport.errors import ErrorDescription
from gateway.transport.pipeline import CallScope, Pipeline
from gateway.transport.servicers.auth import AuthServicer
from gateway.transport.servicers.chat import ChatServicer
from gateway.transport.servicers.reservations import ReservationServicer

log = logging.getLogger(__name__)

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
REQ = TypeVar("REQ")
RES = TypeVar("RES")

# grpc and Connect name the same codes; Connect spells CANCELLED with one L.
CODE_BY_STATUS: dict[grpc.StatusCode, Code] = {
    status: Code.CANCELED if status is grpc.StatusCode.CANCELLED else Code[status.name]
    for status in grpc.StatusCode
    if status is not grpc.StatusCode.OK
}
STATUS_BY_CODE = {code: status for status, code in CODE_BY_STATUS.items()}

_scope_var: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar("web_call_scope", default=None)
_unknown_path_var: contextvars.ContextVar[str] = contextvars.ContextVar("web_unknown_path", default="")


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


def _method_path(ctx: RequestContext[Any, Any]) -> str:
    method = ctx.method
    return f"/{method.service_name}/{method.name}"


class _CallScopeInterceptor:
    """Opens the call's scope before the request body is read; renders the outcome when the call ends."""

    def __init__(self, pipeline: Pipeline, *, unknown_method: bool = False) -> None:
        self._pipeline = pipeline
        self._unknown_method = unknown_method

    async def on_start(self, ctx: RequestContext[Any, Any]) -> CallScope:
        method = _unknown_path_var.get() if self._unknown_method else _method_path(ctx)
        client_address = ctx.client_address

        def time_remaining() -> float | None:
            remaining_ms = ctx.timeout_ms
            return None if remaining_ms is None else max(remaining_ms / 1000, 0.0)

        scope = self._pipeline.begin(
            method, tuple(ctx.request_headers.allitems()), lambda: grpc_peer(client_address), "web", time_remaining
        )
        _scope_var.set(scope)
        ctx.response_headers[REQUEST_ID_HEADER] = scope.request_id
        try:
            if self._unknown_method:
                raise MethodNotFoundError(f"no RPC named {method[:200]!r} is served here")
            scope.acquire_slot()
        except Exception as exc:
            # connectrpc does not end an interceptor whose start failed: finish the scope here.
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


class _Admission:
    """Applies the RPC's auth policy once the request has decoded (the pipeline's last admission step)."""

    async def intercept_unary(
        self,
        call_next: Callable[[REQ, RequestContext[Any, Any]], Awaitable[RES]],
        request: REQ,
        ctx: RequestContext[Any, Any],
        /,
    ) -> RES:
        scope = _scope_var.get()
        assert scope is not None
        await scope.authenticate()
        return await call_next(request, ctx)

    async def intercept_server_stream(
        self,
        call_next: Callable[[REQ, RequestContext[Any, Any]], AsyncIterator[RES]],
        request: REQ,
        ctx: RequestContext[Any, Any],
        /,
    ) -> AsyncIterator[RES]:
        scope = _scope_var.get()
        assert scope is not None
        await scope.authenticate()
        responses = call_next(request, ctx)
        try:
            async for response in responses:
                yield response
        finally:
            # A wrapping generator does not close the one it wraps; the servicer's cleanup must run now.
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                await aclose()


class WebServicerContext(aio.ServicerContext[Any, Any]):
    """What a servicer gets as its `context` on the web face.

    Servicers take per-call facts from `transport.context` (principal, request id, peer, metadata, time
    remaining), not from their context; this answers the same read-only questions for any code that still asks
    the context, and refuses grpc-only operations.
    """

    def __init__(self, ctx: RequestContext[Any, Any]) -> None:
        self._ctx = ctx

    def invocation_metadata(self) -> aio.Metadata:
        return aio.Metadata(*self._ctx.request_headers.allitems())

    def peer(self) -> str:
        return grpc_peer(self._ctx.client_address)

    def time_remaining(self) -> float:
        remaining_ms = self._ctx.timeout_ms
        return float("inf") if remaining_ms is None else max(remaining_ms / 1000, 0.0)

    def cancelled(self) -> bool:
        # A client that goes away cancels the handler's task; nothing polls a flag here.
        return False

    def done(self) -> bool:
        return False

    def _grpc_only(self, name: str) -> Never:
        raise NotImplementedError(f"ServicerContext.{name} is not available on the web face; raise a domain error")

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> Never:
        self._grpc_only("abort")

    async def abort_with_status(self, status: Any) -> Never:
        self._grpc_only("abort_with_status")

    async def read(self) -> Any:
        self._grpc_only("read")

    async def write(self, message: Any) -> None:
        self._grpc_only("write")

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        self._grpc_only("send_initial_metadata")

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._grpc_only("set_trailing_metadata")

    def set_code(self, code: grpc.StatusCode) -> None:
        self._grpc_only("set_code")

    def set_details(self, details: str) -> None:
        self._grpc_only("set_details")

    def set_compression(self, compression: grpc.Compression) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass

    def peer_identities(self) -> Iterable[bytes] | None:
        return None

    def peer_identity_key(self) -> str | None:
        return None

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        return {}


class _AuthService(auth_connect.AuthService):
    """AuthService for connectrpc, answered by the grpc.aio servicer."""

    def __init__(self, servicer: AuthServicer) -> None:
        self._servicer = servicer

    async def initiate_login(
        self,
        request: auth_pb2.InitiateLoginRequest,
        ctx: RequestContext[auth_pb2.InitiateLoginRequest, auth_pb2.InitiateLoginResponse],
    ) -> auth_pb2.InitiateLoginResponse:
        return await self._servicer.InitiateLogin(request, WebServicerContext(ctx))

    async def verify_otp(
        self,
        request: auth_pb2.VerifyOtpRequest,
        ctx: RequestContext[auth_pb2.VerifyOtpRequest, auth_pb2.VerifyOtpResponse],
    ) -> auth_pb2.VerifyOtpResponse:
        return await self._servicer.VerifyOtp(request, WebServicerContext(ctx))

    async def refresh_session(
        self,
        request: auth_pb2.RefreshSessionRequest,
        ctx: RequestContext[auth_pb2.RefreshSessionRequest, auth_pb2.RefreshSessionResponse],
    ) -> auth_pb2.RefreshSessionResponse:
        return await self._servicer.RefreshSession(request, WebServicerContext(ctx))

    async def sign_out(
        self,
        request: auth_pb2.SignOutRequest,
        ctx: RequestContext[auth_pb2.SignOutRequest, auth_pb2.SignOutResponse],
    ) -> auth_pb2.SignOutResponse:
        return await self._servicer.SignOut(request, WebServicerContext(ctx))


class _ChatService(chat_connect.ChatService):
    """ChatService for connectrpc, answered by the grpc.aio servicer's stream."""

    def __init__(self, servicer: ChatServicer) -> None:
        self._servicer = servicer

    def chat(
        self, request: chat_pb2.ChatRequest, ctx: RequestContext[chat_pb2.ChatRequest, chat_pb2.ChatResponse]
    ) -> AsyncIterator[chat_pb2.ChatResponse]:
        return self._servicer.Chat(request, WebServicerContext(ctx))


class _ReservationService(reservations_connect.ReservationService):
    """ReservationService for connectrpc, answered by the grpc.aio servicer."""

    def __init__(self, servicer: ReservationServicer) -> None:
        self._servicer = servicer

    async def list_properties(
        self,
        request: reservations_pb2.ListPropertiesRequest,
        ctx: RequestContext[reservations_pb2.ListPropertiesRequest, reservations_pb2.ListPropertiesResponse],
    ) -> reservations_pb2.ListPropertiesResponse:
        return await self._servicer.ListProperties(request, WebServicerContext(ctx))

    async def check_availability(
        self,
        request: reservations_pb2.CheckAvailabilityRequest,
        ctx: RequestContext[reservations_pb2.CheckAvailabilityRequest, reservations_pb2.CheckAvailabilityResponse],
    ) -> reservations_pb2.CheckAvailabilityResponse:
        return await self._servicer.CheckAvailability(request, WebServicerContext(ctx))

    async def create_reservation(
        self,
        request: reservations_pb2.CreateReservationRequest,
        ctx: RequestContext[reservations_pb2.CreateReservationRequest, reservations_pb2.CreateReservationResponse],
    ) -> reservations_pb2.CreateReservationResponse:
        return await self._servicer.CreateReservation(request, WebServicerContext(ctx))

    async def list_reservations(
        self,
        request: reservations_pb2.ListReservationsRequest,
        ctx: RequestContext[reservations_pb2.ListReservationsRequest, reservations_pb2.ListReservationsResponse],
    ) -> reservations_pb2.ListReservationsResponse:
        return await self._servicer.ListReservations(request, WebServicerContext(ctx))

    async def get_reservation(
        self,
        request: reservations_pb2.GetReservationRequest,
        ctx: RequestContext[reservations_pb2.GetReservationRequest, reservations_pb2.GetReservationResponse],
    ) -> reservations_pb2.GetReservationResponse:
        return await self._servicer.GetReservation(request, WebServicerContext(ctx))

    async def cancel_reservation(
        self,
        request: reservations_pb2.CancelReservationRequest,
        ctx: RequestContext[reservations_pb2.CancelReservationRequest, reservations_pb2.CancelReservationResponse],
    ) -> reservations_pb2.CancelReservationResponse:
        return await self._servicer.CancelReservation(request, WebServicerContext(ctx))


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
            service_name="unknown",
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
            interceptors=[_CallScopeInterceptor(pipeline, unknown_method=True)],
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


class RpcRoutes:
    """Routes RPC paths ("/package.Service/Method") to the connectrpc app that serves them."""

    def __init__(
        self,
        pipeline: Pipeline,
        auth: AuthServicer,
        chat: ChatServicer,
        reservations: ReservationServicer,
    ) -> None:
        interceptors: list[Interceptor] = [_CallScopeInterceptor(pipeline), _Admission()]
        apps: list[ConnectASGIApplication[Any]] = [
            auth_connect.AuthServiceASGIApplication(_AuthService(auth), interceptors=interceptors),
            chat_connect.ChatServiceASGIApplication(_ChatService(chat), interceptors=interceptors),
            reservations_connect.ReservationServiceASGIApplication(
                _ReservationService(reservations), interceptors=interceptors
            ),
        ]
        self.services: dict[str, ConnectASGIApplication[Any]] = {app.path.strip("/"): app for app in apps}
        self.methods = frozenset(
            f"/{service.full_name}/{method.name}"
            for file in (auth_pb2.DESCRIPTOR, chat_pb2.DESCRIPTOR, reservations_pb2.DESCRIPTOR)
            for service in file.services_by_name.values()
            for method in service.methods
        )
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
            return self.services[path.split("/")[1]]
        return self._unknown_unary if _connect_unary(content_type) else self._unknown_stream

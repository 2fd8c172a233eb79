"""AuthService over gRPC: passwordless sign-in through the login service."""

from __future__ import annotations

from typing import Any

from grpc import aio

from booking.v1 import auth_pb2, auth_pb2_grpc
from gateway.errors import NotImplementedYetError, TokenMissingError
from gateway.services.login import LoginService
from gateway.transport import convert
from gateway.transport.context import current_metadata, current_peer, current_principal
from gateway.transport.peer import ClientAddressResolver

Context = aio.ServicerContext[Any, Any]


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """Passwordless sign-in. Without a login service (no user pool configured) every RPC is UNIMPLEMENTED."""

    def __init__(self, login: LoginService | None = None, addresses: ClientAddressResolver | None = None) -> None:
        self._login = login
        self._addresses = addresses or ClientAddressResolver()

    def _service(self) -> LoginService:
        if self._login is None:
            raise NotImplementedYetError("sign-in is not configured on this gateway")
        return self._login

    def _client_address(self, context: Context) -> str:
        # From the call's contextvars, not the grpc context: the web face calls this servicer too.
        return self._addresses.resolve(current_peer(), current_metadata())

    async def InitiateLogin(
        self, request: auth_pb2.InitiateLoginRequest, context: Context
    ) -> auth_pb2.InitiateLoginResponse:
        started = await self._service().initiate(request.email, request.name, self._client_address(context))
        return convert.login_started_to_pb(started)

    async def VerifyOtp(self, request: auth_pb2.VerifyOtpRequest, context: Context) -> auth_pb2.VerifyOtpResponse:
        delivery = await self._service().verify(request.login_id, request.code, self._client_address(context))
        return auth_pb2.VerifyOtpResponse(token_delivery=convert.token_delivery_to_pb(delivery))

    async def RefreshSession(
        self, request: auth_pb2.RefreshSessionRequest, context: Context
    ) -> auth_pb2.RefreshSessionResponse:
        tokens = await self._service().refresh(request.refresh_token)
        return convert.refreshed_tokens_to_pb(tokens)

    async def SignOut(self, request: auth_pb2.SignOutRequest, context: Context) -> auth_pb2.SignOutResponse:
        principal = current_principal()
        if principal is None:  # SignOut is REQUIRED: the interceptor lets no anonymous call through
            raise TokenMissingError('this call needs "authorization: Bearer <access token>" metadata')
        await self._service().sign_out(principal, request.refresh_token)
        return auth_pb2.SignOutResponse()

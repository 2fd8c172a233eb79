"""AuthService: passwordless sign-in through the login service."""

from __future__ import annotations

from booking.v1 import auth_pb2
from gateway.calls import Call
from gateway.errors import NotImplementedYetError
from gateway.services.login import LoginService
from gateway.transport import convert
from gateway.transport.peer import ClientAddressResolver


class AuthHandlers:
    """Passwordless sign-in. Without a login service (no user pool configured) every RPC is UNIMPLEMENTED."""

    def __init__(self, login: LoginService | None = None, addresses: ClientAddressResolver | None = None) -> None:
        self._login = login
        self._addresses = addresses or ClientAddressResolver()

    def _service(self) -> LoginService:
        if self._login is None:
            raise NotImplementedYetError("sign-in is not configured on this gateway")
        return self._login

    async def InitiateLogin(self, request: auth_pb2.InitiateLoginRequest, call: Call) -> auth_pb2.InitiateLoginResponse:
        client = self._addresses.resolve(call.peer, call.metadata)
        started = await self._service().initiate(request.email, request.name, client)
        return convert.login_started_to_pb(started)

    async def VerifyOtp(self, request: auth_pb2.VerifyOtpRequest, call: Call) -> auth_pb2.VerifyOtpResponse:
        client = self._addresses.resolve(call.peer, call.metadata)
        delivery = await self._service().verify(request.login_id, request.code, client)
        return auth_pb2.VerifyOtpResponse(token_delivery=convert.token_delivery_to_pb(delivery))

    async def RefreshSession(
        self, request: auth_pb2.RefreshSessionRequest, call: Call
    ) -> auth_pb2.RefreshSessionResponse:
        tokens = await self._service().refresh(request.refresh_token)
        return convert.refreshed_tokens_to_pb(tokens)

    async def SignOut(self, request: auth_pb2.SignOutRequest, call: Call) -> auth_pb2.SignOutResponse:
        await self._service().sign_out(call.caller, request.refresh_token)
        return auth_pb2.SignOutResponse()

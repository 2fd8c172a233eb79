"""AuthService over gRPC."""

from __future__ import annotations

from typing import Any

from grpc import aio

from booking.v1 import auth_pb2, auth_pb2_grpc
from gateway.errors import NotImplementedYetError

Context = aio.ServicerContext[Any, Any]


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """Passwordless sign-in. Not served by this build yet: every RPC answers UNIMPLEMENTED."""

    async def InitiateLogin(
        self, request: auth_pb2.InitiateLoginRequest, context: Context
    ) -> auth_pb2.InitiateLoginResponse:
        raise NotImplementedYetError("sign-in is not available in this build yet")

    async def VerifyOtp(self, request: auth_pb2.VerifyOtpRequest, context: Context) -> auth_pb2.VerifyOtpResponse:
        raise NotImplementedYetError("sign-in is not available in this build yet")

    async def RefreshSession(
        self, request: auth_pb2.RefreshSessionRequest, context: Context
    ) -> auth_pb2.RefreshSessionResponse:
        raise NotImplementedYetError("sign-in is not available in this build yet")

    async def SignOut(self, request: auth_pb2.SignOutRequest, context: Context) -> auth_pb2.SignOutResponse:
        raise NotImplementedYetError("sign-in is not available in this build yet")

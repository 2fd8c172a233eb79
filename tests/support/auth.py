"""Helpers for sign-in tests: stubs, unique addresses, extra gateways with their own settings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from booking.v1 import auth_pb2, auth_pb2_grpc
from gateway.adapters.aws import AwsTarget
from gateway.config import Settings
from tests.support.gateway import RunningGateway, running_gateway


def new_email(prefix: str = "guest") -> str:
    """An address no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def auth_stub(gateway: RunningGateway) -> auth_pb2_grpc.AuthServiceAsyncStub:
    """An AuthService client on the gateway's channel."""
    return auth_pb2_grpc.AuthServiceStub(gateway.channel)


async def initiate(
    gateway: RunningGateway, email: str, *, name: str = "", metadata: tuple[tuple[str, str], ...] = ()
) -> auth_pb2.InitiateLoginResponse:
    """InitiateLogin for `email`."""
    return await auth_stub(gateway).InitiateLogin(
        auth_pb2.InitiateLoginRequest(email=email, name=name), metadata=metadata, timeout=10
    )


async def verify(
    gateway: RunningGateway, login_id: str, code: str, *, metadata: tuple[tuple[str, str], ...] = ()
) -> auth_pb2.VerifyOtpResponse:
    """VerifyOtp for a login."""
    return await auth_stub(gateway).VerifyOtp(
        auth_pb2.VerifyOtpRequest(login_id=login_id, code=code), metadata=metadata, timeout=10
    )


def mailed_code(gateway: RunningGateway, email: str) -> str:
    """The newest code the devstack mailed to `email`."""
    code = gateway.devstack.mailbox.latest_code(email)
    assert code is not None, "no code was mailed"
    return code


def wrong_code(code: str) -> str:
    """A code of the same length that is surely not `code`."""
    return "".join("1" if digit != "1" else "2" for digit in code)


async def sign_in(gateway: RunningGateway, email: str, *, name: str = "") -> auth_pb2.TokenDelivery:
    """The whole sign-in: InitiateLogin, the code from the dev mailbox, VerifyOtp."""
    started = await initiate(gateway, email, name=name)
    answer = await verify(gateway, started.login_id, mailed_code(gateway, email))
    return answer.token_delivery


@asynccontextmanager
async def gateway_with(
    base: RunningGateway, settings: Settings, *, target: AwsTarget | None = None, **changes: Any
) -> AsyncIterator[RunningGateway]:
    """Another real gateway on the same devstack, with some settings changed (built as `gateway serve` does)."""
    async with running_gateway(base.devstack, settings.replace(**changes), target=target) as running:
        yield running

"""The web face over the wire from Node (connect-web on Node's fetch, Connect and gRPC-Web), compared with the
gRPC face: this side starts the gateways, makes the tokens, asks the gRPC face, and hands Node the answers it
must match (clients/web/tests/wire.test.mjs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from booking.v1 import auth_pb2, reservations_pb2, reservations_pb2_grpc
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.testing import CLIENT_ID, ISSUER, SigningKey, access_claims, eventually, mint
from tests.support.auth import auth_stub, initiate, mailed_code, new_email, wrong_code
from tests.support.calls import raw_unary
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.jwks import JwksServer
from tests.support.mailbox_http import mailbox_server
from tests.support.node import run_node
from tests.support.status import error_info, reason_of, retry_delay_seconds

ALLOWED_ORIGIN = "http://chat.example.test:5173"


@dataclass
class BearerWorld:
    gateway: RunningGateway
    key: SigningKey


@pytest.fixture(scope="module")
async def bearer_world(devstack: DevStack, settings: Settings) -> AsyncIterator[BearerWorld]:
    """A gateway that trusts the tests' own signing key (so any claim can be minted) and lists one origin."""
    key = SigningKey.generate()
    jwks = JwksServer(key)
    await jwks.start()
    try:
        configured = settings.replace(
            issuer=ISSUER, jwks_url=jwks.url, allowed_client_ids=(CLIENT_ID,), web_allowed_origin=(ALLOWED_ORIGIN,)
        )
        async with running_gateway(devstack, configured) as gateway:
            yield BearerWorld(gateway, key)
    finally:
        await jwks.stop()


@pytest.fixture(scope="module")
async def typing_gateway(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway whose scripted agent types a word every 100 ms, so a client can leave in the middle of a turn."""
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=100.0)) as running:
        yield running


async def chat_settled(gateway: RunningGateway) -> bool:
    """Wait (bounded) until no chat turn is open on `gateway` and no task of one is left."""

    def settled() -> bool:
        turns = [t for t in asyncio.all_tasks() if t.get_name().startswith("chat-turn-")]
        return gateway.app.chat.load.open == 0 and not turns

    return await eventually(settled, timeout_seconds=5, interval_seconds=0.025, what="every chat turn over")


async def grpc_answer(channel: aio.Channel, token: str | None) -> dict[str, str]:
    """What the gRPC face answers to ListReservations with this bearer."""
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    stub = reservations_pb2_grpc.ReservationServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListReservations(reservations_pb2.ListReservationsRequest(), metadata=metadata, timeout=10)
    code, reason = reason_of(caught.value)
    return {"code": code.name, "reason": reason}


def token_cases(key: SigningKey) -> dict[str, str | None]:
    now = int(time.time())
    stranger = SigningKey.generate(kid=key.kid)  # right kid, wrong key: the signature fails
    return {
        "missing": None,
        "expired": mint(key, access_claims(exp=now - 120, iat=now - 3720)),
        "id-token": mint(key, access_claims(token_use="id", aud=CLIENT_ID, client_id=None)),
        "wrong-issuer": mint(key, access_claims(iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other")),
        "unknown-client": mint(key, access_claims(client_id="another-client")),
        "bad-signature": mint(stranger, access_claims()),
        "not-a-jwt": "not-a-jwt",
        "64KiB": "a" * 65_536,
        "exp-nan": mint(key, access_claims(exp=float("nan"))),
        "exp-float": mint(key, access_claims(exp=now + 3600.5)),
        "nbf-in-future": mint(key, access_claims(nbf=now + 600)),
        "signature-re-encoded": _re_encoded_signature(mint(key)),
    }


def _re_encoded_signature(token: str) -> str:
    """`token` with its signature's last character changed in the unused low bits only (same bytes decoded)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    head, signature = token.rsplit(".", 1)
    assert len(signature) % 4 == 2  # a 2048-bit signature: 342 characters, the last one carries 4 unused bits
    last = alphabet.index(signature[-1])
    return f"{head}.{signature[:-1]}{alphabet[last ^ 1]}"


async def grpc_wrong_code(gateway: RunningGateway) -> dict[str, Any]:
    """What the gRPC face answers to a wrong one-time code."""
    email = new_email("grpc-wrong")
    started = await initiate(gateway, email)
    with pytest.raises(aio.AioRpcError) as caught:
        await auth_stub(gateway).VerifyOtp(
            auth_pb2.VerifyOtpRequest(login_id=started.login_id, code=wrong_code(mailed_code(gateway, email))),
            timeout=10,
        )
    code, reason = reason_of(caught.value)
    return {
        "expect": {"code": code.name, "reason": reason},
        "attemptsLeft": error_info(caught.value).metadata["attempts_left"],
    }


async def grpc_code_again_too_soon(gateway: RunningGateway) -> dict[str, Any]:
    """What the gRPC face answers to a second InitiateLogin inside the resend cooldown."""
    email = new_email("grpc-again")
    await initiate(gateway, email)
    with pytest.raises(aio.AioRpcError) as caught:
        await initiate(gateway, email)
    code, reason = reason_of(caught.value)
    delay = retry_delay_seconds(caught.value)
    assert delay is not None
    return {"expect": {"code": code.name, "reason": reason}, "maxDelaySeconds": delay + 5}


async def test_the_web_face_answers_like_the_grpc_face_over_connect_and_grpc_web(
    bearer_world: BearerWorld, gateway: RunningGateway, typing_gateway: RunningGateway, tmp_path: Path
) -> None:
    cases: list[dict[str, Any]] = []
    for name, token in token_cases(bearer_world.key).items():
        expect = await grpc_answer(bearer_world.gateway.channel, token)
        cases.append({"name": name, "token": token, "expect": expect})
    # The table is what the gRPC face's own tests pin; here it only has to be the same on both faces.
    reasons = {c["name"]: c["expect"]["reason"] for c in cases}
    assert reasons["expired"] == "TOKEN_EXPIRED"
    assert [reasons[name] for name in ("exp-nan", "exp-float", "nbf-in-future", "signature-re-encoded")] == [
        "TOKEN_MALFORMED",
        "TOKEN_INVALID",
        "TOKEN_INVALID",
        "TOKEN_MALFORMED",
    ]
    with pytest.raises(aio.AioRpcError) as caught:
        await raw_unary(gateway.channel, "/booking.v1.ReservationService/Nope", b"")
    code, reason = reason_of(caught.value)
    assert (code, reason) == (grpc.StatusCode.UNIMPLEMENTED, "METHOD_NOT_FOUND")
    wrong = await grpc_wrong_code(gateway)
    assert wrong["expect"] == {"code": "UNAUTHENTICATED", "reason": "OTP_INVALID"}
    again = await grpc_code_again_too_soon(gateway)
    assert again["expect"] == {"code": "RESOURCE_EXHAUSTED", "reason": "RATE_LIMITED"}
    config = {
        "webUrl": gateway.web_url,
        "bearerWebUrl": bearer_world.gateway.web_url,
        "corsWebUrl": bearer_world.gateway.web_url,
        "slowWebUrl": typing_gateway.web_url,
        "allowedOrigin": ALLOWED_ORIGIN,
        "tokenCases": cases,
        "unknownMethod": {"expect": {"code": code.name, "reason": reason}},
        "wrongCode": wrong,
        "rateLimited": again,
    }
    async with mailbox_server(gateway.devstack.mailbox) as mailbox_url:
        await run_node("tests/wire.test.mjs", {**config, "mailboxUrl": mailbox_url}, tmp_path)
    # The aborted streams stopped their agents: no turn is open, no task of one is left.
    assert await chat_settled(typing_gateway)
    # Every call above went through the shared pipeline and gave its concurrency slot back.
    for running in (bearer_world.gateway, gateway, typing_gateway):
        assert running.server.limiter.in_flight == 0

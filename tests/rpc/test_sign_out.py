"""SignOut over the wire: the caller's own refresh token is revoked at Cognito, nobody else's; the session is refused
on every replica, and RefreshSession refuses a signed-out family without asking Cognito."""

from __future__ import annotations

import base64
import time
from typing import Any

import aiohttp
import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc import aio

from booking.v1 import auth_pb2, reservations_pb2, reservations_pb2_grpc
from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb.revocation_store import DynamoRevocationStore
from gateway.config import Settings
from gateway.testing import eventually
from tests.support.auth import auth_stub, gateway_with, mailed_code, new_email, sign_in
from tests.support.chat import chat
from tests.support.gateway import RunningGateway
from tests.support.identity import emulator_sign_in
from tests.support.status import reason_of


def bearer(access_token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {access_token}"),)


async def sign_out(gateway: RunningGateway, access_token: str, refresh_token: str = "") -> None:
    await auth_stub(gateway).SignOut(
        auth_pb2.SignOutRequest(refresh_token=refresh_token), metadata=bearer(access_token), timeout=10
    )


async def refresh(gateway: RunningGateway, refresh_token: str) -> auth_pb2.RefreshSessionResponse:
    return await auth_stub(gateway).RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=refresh_token), timeout=10
    )


async def alive_at_cognito(gateway: RunningGateway, aws: AwsClients, refresh_token: str) -> bool:
    """Whether Cognito itself (not the gateway) still honours the refresh token."""
    auth = gateway.app.settings.auth
    assert auth.user_pool_id is not None
    assert auth.app_client_id is not None
    try:
        await aws.cognito.admin_initiate_auth(
            UserPoolId=auth.user_pool_id,
            ClientId=auth.app_client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": refresh_token},
        )
    except aws.cognito.exceptions.NotAuthorizedException:
        return False
    return True


def cognito_calls(gateway: RunningGateway) -> float:
    """How many Cognito calls the gateway has made (its upstream duration histogram's count)."""
    total = 0.0
    for metric in gateway.app.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "gateway_upstream_duration_seconds_count" and sample.labels["service"] == "cognito-idp":
                total += sample.value
    return total


async def test_sign_out_revokes_the_refresh_token_and_refuses_the_access_token(
    gateway: RunningGateway, aws: AwsClients
) -> None:
    delivery = await sign_in(gateway, new_email())
    await sign_out(gateway, delivery.access_token, delivery.refresh_token)

    assert not await alive_at_cognito(gateway, aws, delivery.refresh_token)
    with pytest.raises(aio.AioRpcError) as caught:
        await sign_out(gateway, delivery.access_token, delivery.refresh_token)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")
    with pytest.raises(aio.AioRpcError) as caught:
        await refresh(gateway, delivery.refresh_token)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")


@pytest.mark.parametrize(
    "garbage",
    ["garbage", "x" * 8192, "eyJhbGciOiJSU0EtT0FFUCJ9.AAAA.BBBB.CCCC.DDDD", " refresh "],
    ids=["word", "longest-allowed", "jwe-shaped", "padded-word"],
)
async def test_sign_out_with_a_garbage_refresh_token_refuses_the_callers_refresh_token_for_its_lifetime(
    gateway: RunningGateway, aws: AwsClients, table: str, garbage: str
) -> None:
    delivery = await sign_in(gateway, new_email())
    await sign_out(gateway, delivery.access_token, garbage)

    # Cognito was never asked to revoke anything: the real refresh token still works there...
    assert await alive_at_cognito(gateway, aws, delivery.refresh_token)
    # ...but the gateway refuses it, without asking Cognito for tokens, for the refresh token's whole lifetime.
    before = cognito_calls(gateway)
    with pytest.raises(aio.AioRpcError) as caught:
        await refresh(gateway, delivery.refresh_token)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")
    assert cognito_calls(gateway) == before
    lifetime = gateway.app.settings.login.refresh_token_lifetime_seconds
    family = principal_family(delivery.access_token)
    recorded = await DynamoRevocationStore(aws.dynamodb, table).revoked_since(time.time() - 60)
    assert max(r.expires_at for r in recorded if r.token_family == family) >= time.time() + lifetime - 60


async def test_sign_out_with_another_persons_refresh_token_leaves_their_sign_in_alive(
    gateway: RunningGateway, aws: AwsClients
) -> None:
    victim = await sign_in(gateway, new_email("victim"))
    caller = await sign_in(gateway, new_email("caller"))
    await sign_out(gateway, caller.access_token, victim.refresh_token)

    assert await alive_at_cognito(gateway, aws, victim.refresh_token)
    refreshed = await refresh(gateway, victim.refresh_token)
    assert await refusal(gateway, refreshed.access_token) is None
    assert await refusal(gateway, victim.access_token) is None
    # The caller's own sign-in is the one signed out, refresh token included.
    assert await refusal(gateway, caller.access_token) == "TOKEN_REVOKED"
    with pytest.raises(aio.AioRpcError) as caught:
        await refresh(gateway, caller.refresh_token)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")


async def test_sign_out_with_the_same_persons_other_sign_in_leaves_that_sign_in_alive(
    gateway: RunningGateway, aws: AwsClients
) -> None:
    email = new_email("two-devices")
    laptop = await emulator_sign_in(gateway.devstack, email)
    phone = await sign_in(gateway, email)
    # The gateway learns the laptop's refresh token (and its family) when the laptop refreshes through it.
    await refresh(gateway, laptop.refresh_token)

    await sign_out(gateway, phone.access_token, laptop.refresh_token)

    assert await alive_at_cognito(gateway, aws, laptop.refresh_token)
    assert await refusal(gateway, (await refresh(gateway, laptop.refresh_token)).access_token) is None
    assert await refusal(gateway, phone.access_token) == "TOKEN_REVOKED"


def principal_family(access_token: str) -> str:
    """The token family (`origin_jti`) of an access token, read without checking it (the test trusts it)."""
    family = jwt.decode(access_token, options={"verify_signature": False})["origin_jti"]
    assert isinstance(family, str)
    return family


async def test_sign_out_needs_a_bearer_token(gateway: RunningGateway) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await auth_stub(gateway).SignOut(auth_pb2.SignOutRequest(), timeout=10)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


async def test_without_a_refresh_token_sign_out_refuses_the_whole_token_family_even_after_refresh(
    gateway: RunningGateway,
) -> None:
    delivery = await sign_in(gateway, new_email())
    await sign_out(gateway, delivery.access_token)

    # Cognito still honours the refresh token, but the gateway refuses it: it delivered it for this sign-in.
    with pytest.raises(aio.AioRpcError) as caught:
        await refresh(gateway, delivery.refresh_token)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")


async def refusal(gateway: RunningGateway, access_token: str) -> str | None:
    """The TOKEN_* reason a REQUIRED call with this bearer is refused with, or None when it is accepted.

    ListReservations is the probe: whatever it answers once authenticated, only the bearer check says UNAUTHENTICATED.
    """
    stub = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    try:
        await stub.ListReservations(
            reservations_pb2.ListReservationsRequest(), metadata=bearer(access_token), timeout=10
        )
    except aio.AioRpcError as exc:
        code, reason = reason_of(exc)
        return reason if code == grpc.StatusCode.UNAUTHENTICATED else None
    return None


async def test_another_replica_refuses_the_signed_out_session_after_its_next_poll(
    gateway: RunningGateway, settings: Settings
) -> None:
    async with gateway_with(gateway, settings, revocation_poll_seconds=0.05) as replica:
        delivery = await sign_in(gateway, new_email())
        other = await sign_in(gateway, new_email())
        assert await refusal(replica, delivery.access_token) is None
        await sign_out(gateway, delivery.access_token, delivery.refresh_token)

        reason = await eventually(lambda: refusal(replica, delivery.access_token), timeout_seconds=5)
        assert reason == "TOKEN_REVOKED"
        # Another person's session on that replica is untouched.
        assert await refusal(replica, other.access_token) is None


async def connect_call(gateway: RunningGateway, method: str, body: dict[str, str], bearer_token: str = "") -> Any:
    """One unary call on the web face (Connect protocol, JSON): (HTTP status, decoded JSON answer)."""
    headers = {"content-type": "application/json"}
    if bearer_token:
        headers["authorization"] = f"Bearer {bearer_token}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway.web_url}/booking.v1.AuthService/{method}", json=body, headers=headers) as answer,
    ):
        return answer.status, await answer.json()


def connect_reason(answer: dict[str, Any]) -> tuple[str, str]:
    """A Connect error's code and its ErrorInfo reason."""
    [detail] = [d for d in answer["details"] if d["type"] == "google.rpc.ErrorInfo"]
    info = error_details_pb2.ErrorInfo()
    info.ParseFromString(base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4)))
    return answer["code"], info.reason


@pytest.mark.parametrize("whose", ["garbage", "theirs"])
async def test_on_the_web_face_too_sign_out_with_a_token_not_the_callers_signs_out_only_the_caller_for_good(
    gateway: RunningGateway, aws: AwsClients, whose: str
) -> None:
    mine = await sign_in(gateway, new_email("web"))
    theirs = await sign_in(gateway, new_email("web-victim"))
    token = theirs.refresh_token if whose == "theirs" else "garbage"

    status, _ = await connect_call(gateway, "SignOut", {"refreshToken": token}, mine.access_token)
    assert status == 200

    status, answer = await connect_call(gateway, "RefreshSession", {"refreshToken": mine.refresh_token})
    assert (status, connect_reason(answer)) == (401, ("unauthenticated", "TOKEN_REVOKED"))
    status, answer = await connect_call(gateway, "RefreshSession", {"refreshToken": theirs.refresh_token})
    assert status == 200
    assert answer["accessToken"]
    assert await alive_at_cognito(gateway, aws, theirs.refresh_token)


async def test_a_refresh_token_delivered_in_the_chat_is_the_callers_own_and_revoked_at_cognito(
    gateway: RunningGateway, aws: AwsClients
) -> None:
    email = new_email("chat-sign-out")
    sent = await chat(gateway.channel, f"Jane Roe, {email}")
    verified = await chat(gateway.channel, mailed_code(gateway, email), sent.session_id)
    delivery = verified.token_delivery
    assert delivery is not None

    await sign_out(gateway, delivery.access_token, delivery.refresh_token)
    assert not await alive_at_cognito(gateway, aws, delivery.refresh_token)


async def test_sign_out_refuses_the_sign_in_for_as_long_as_any_of_its_access_tokens_could_pass_the_bearer_check(
    gateway: RunningGateway, aws: AwsClients, table: str
) -> None:
    """One sign-in used in two places: the second refreshed its own access token before the first signed out.

    Cognito revokes the refresh token and every token issued from it, but the gateway checks access tokens itself:
    the family must stay refused until neither token could pass the bearer check any more, that is past the later
    token's `exp` plus the clock skew the check allows, not merely until the signing-out token's `exp` (after
    which, before the fix, the other token and the signed-out one within its skew were accepted again).
    """
    first = await sign_in(gateway, new_email())
    second = await refresh(gateway, first.refresh_token)
    family = principal_family(first.access_token)
    assert principal_family(second.access_token) == family
    await sign_out(gateway, first.access_token, first.refresh_token)

    assert await refusal(gateway, second.access_token) == "TOKEN_REVOKED"
    expiries = [
        jwt.decode(t, options={"verify_signature": False})["exp"] for t in (first.access_token, second.access_token)
    ]
    needed = max(expiries) + gateway.app.settings.auth.jwt_leeway_seconds
    recorded = await DynamoRevocationStore(aws.dynamodb, table).revoked_since(time.time() - 60)
    assert max(r.expires_at for r in recorded if r.token_family == family) >= needed

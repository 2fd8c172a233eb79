"""AuthService over the wire: the real gateway, the emulator with its EMAIL_OTP extension, the dev mailbox."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest
from grpc import aio

from booking.v1 import auth_pb2
from gateway.adapters.dynamodb.revocation_store import DynamoRevocationStore
from gateway.config import Settings
from tests.support.auth import (
    auth_stub,
    gateway_with,
    initiate,
    mailed_code,
    new_email,
    sign_in,
    verify,
    wrong_code,
)
from tests.support.gateway import RunningGateway
from tests.support.status import error_info, field_violations, reason_of

GUEST_ID = re.compile(r"GST-\d{4}-[0-9A-HJKMNP-TV-Z]{6}")


@pytest.fixture(scope="module")
async def relaxed(gateway: RunningGateway, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway without a resend cooldown worth waiting for, so one address can start several logins."""
    async with gateway_with(gateway, settings, login_resend_cooldown_seconds=0.001, login_per_email_limit=100) as gw:
        yield gw


def claims(token: str) -> dict[str, object]:
    # The signature is the bearer verifier's business; these tests only read who the token is for.
    decoded: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return decoded


async def test_initiate_login_then_verify_otp_with_the_mailed_code_signs_in(
    gateway: RunningGateway, relaxed: RunningGateway
) -> None:
    email = new_email("ann")
    before = datetime.now(UTC)
    started = await initiate(gateway, email, name="Ann Example")

    assert len(started.login_id) >= 22  # at least 128 random bits, base64url
    assert started.destination == "a***@e***"
    expires_at = started.expires_at.ToDatetime(UTC)
    resend_allowed_at = started.resend_allowed_at.ToDatetime(UTC)
    assert before < expires_at <= before + timedelta(seconds=600) + timedelta(seconds=5)
    assert expires_at - resend_allowed_at == timedelta(minutes=3) - timedelta(seconds=60)
    code = mailed_code(gateway, email)
    assert len(code) == 8

    delivery = (await verify(gateway, started.login_id, code)).token_delivery

    assert delivery.token_type == "Bearer"
    assert delivery.expires_in == 3600
    assert delivery.email == email
    assert GUEST_ID.fullmatch(delivery.guest_id)
    assert delivery.refresh_token
    access, identity = claims(delivery.access_token), claims(delivery.id_token)
    assert access["token_use"] == "access"
    assert access["sub"] == identity["sub"] == delivery.sub
    assert access["client_id"] == gateway.devstack.endpoints.app_client_id
    # Signing in again is the same person with the same guest profile.
    again = await sign_in(relaxed, email)
    assert (again.sub, again.guest_id) == (delivery.sub, delivery.guest_id)


async def test_the_email_is_trimmed_and_its_domain_lower_cased(gateway: RunningGateway) -> None:
    email = new_email("Mixed.Case")
    shouted = "  " + email.replace("example.com", "Example.COM") + " "
    started = await initiate(gateway, shouted)
    delivery = (await verify(gateway, started.login_id, mailed_code(gateway, email))).token_delivery
    assert delivery.email == email


async def test_a_new_and_a_known_address_get_field_for_field_identical_answers(relaxed: RunningGateway) -> None:
    known, new = new_email("kim"), new_email("kai")
    await sign_in(relaxed, known)
    known_answer = await initiate(relaxed, known)
    new_answer = await initiate(relaxed, new)

    def shape(answer: auth_pb2.InitiateLoginResponse) -> tuple[object, ...]:
        fields = tuple(f.name for f, _ in answer.ListFields())
        lifetime = answer.expires_at.ToDatetime() - answer.resend_allowed_at.ToDatetime()
        return fields, answer.destination, len(answer.login_id), lifetime

    assert shape(known_answer) == shape(new_answer)
    assert known_answer.login_id != new_answer.login_id


async def test_an_account_that_cannot_sign_in_gets_the_same_answer_and_no_code_ever_works(
    relaxed: RunningGateway,
) -> None:
    email, other = new_email("dora"), new_email("dana")
    await sign_in(relaxed, email)
    endpoints = relaxed.devstack.endpoints
    await relaxed.app.clients.cognito.admin_disable_user(UserPoolId=endpoints.user_pool_id, Username=email)
    mailed_before = len(relaxed.devstack.mailbox.messages(email))

    disabled_answer = await initiate(relaxed, email)
    normal_answer = await initiate(relaxed, other)

    assert disabled_answer.destination == normal_answer.destination == "d***@e***"
    assert len(relaxed.devstack.mailbox.messages(email)) == mailed_before  # nothing was sent
    with pytest.raises(aio.AioRpcError) as caught:
        await verify(relaxed, disabled_answer.login_id, "12345678")
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "OTP_INVALID")
    assert error_info(caught.value).metadata["attempts_left"] == "2"


async def test_a_code_works_only_once(gateway: RunningGateway) -> None:
    email = new_email()
    started = await initiate(gateway, email)
    code = mailed_code(gateway, email)
    await verify(gateway, started.login_id, code)
    with pytest.raises(aio.AioRpcError) as caught:
        await verify(gateway, started.login_id, code)
    assert reason_of(caught.value) == (grpc.StatusCode.FAILED_PRECONDITION, "LOGIN_NOT_FOUND")


async def test_a_wrong_code_is_unauthenticated_with_otp_invalid_and_the_right_one_still_works(
    gateway: RunningGateway,
) -> None:
    email = new_email()
    started = await initiate(gateway, email)
    code = mailed_code(gateway, email)
    with pytest.raises(aio.AioRpcError) as caught:
        await verify(gateway, started.login_id, wrong_code(code))
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "OTP_INVALID")
    assert error_info(caught.value).metadata["attempts_left"] == "2"
    assert (await verify(gateway, started.login_id, code)).token_delivery.access_token


async def test_after_three_wrong_codes_the_fourth_attempt_fails_even_with_the_right_code(
    gateway: RunningGateway,
) -> None:
    email = new_email()
    started = await initiate(gateway, email)
    code = mailed_code(gateway, email)
    for left in ("2", "1", "0"):
        with pytest.raises(aio.AioRpcError) as caught:
            await verify(gateway, started.login_id, wrong_code(code))
        assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "OTP_INVALID")
        assert error_info(caught.value).metadata["attempts_left"] == left
    with pytest.raises(aio.AioRpcError) as caught:
        await verify(gateway, started.login_id, code)
    assert reason_of(caught.value) == (grpc.StatusCode.FAILED_PRECONDITION, "OTP_ATTEMPTS_EXHAUSTED")


async def test_two_concurrent_verifications_cannot_both_spend_the_last_attempt(gateway: RunningGateway) -> None:
    email = new_email()
    started = await initiate(gateway, email)
    code = mailed_code(gateway, email)
    for _ in range(2):
        with pytest.raises(aio.AioRpcError):
            await verify(gateway, started.login_id, wrong_code(code))

    outcomes = await asyncio.gather(
        verify(gateway, started.login_id, wrong_code(code)),
        verify(gateway, started.login_id, wrong_code(code)),
        return_exceptions=True,
    )

    reasons = sorted(reason_of(o)[1] for o in outcomes if isinstance(o, aio.AioRpcError))
    assert reasons == ["OTP_ATTEMPTS_EXHAUSTED", "OTP_INVALID"]


async def test_two_concurrent_right_codes_on_the_last_attempt_sign_in_once(gateway: RunningGateway) -> None:
    email = new_email()
    started = await initiate(gateway, email)
    code = mailed_code(gateway, email)
    for _ in range(2):
        with pytest.raises(aio.AioRpcError):
            await verify(gateway, started.login_id, wrong_code(code))

    outcomes = await asyncio.gather(
        verify(gateway, started.login_id, code), verify(gateway, started.login_id, code), return_exceptions=True
    )

    assert sum(isinstance(o, auth_pb2.VerifyOtpResponse) for o in outcomes) == 1
    failure = next(o for o in outcomes if isinstance(o, aio.AioRpcError))
    assert reason_of(failure)[0] == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_newer_initiate_login_supersedes_the_earlier_one(relaxed: RunningGateway) -> None:
    email = new_email()
    first = await initiate(relaxed, email)
    first_code = mailed_code(relaxed, email)
    second = await initiate(relaxed, email)
    second_code = mailed_code(relaxed, email)
    assert first_code != second_code or first.login_id != second.login_id
    for code in (first_code, second_code):
        with pytest.raises(aio.AioRpcError) as caught:
            await verify(relaxed, first.login_id, code)
        assert reason_of(caught.value) == (grpc.StatusCode.FAILED_PRECONDITION, "LOGIN_NOT_FOUND")
    assert (await verify(relaxed, second.login_id, second_code)).token_delivery.email == email


async def test_an_expired_code_is_failed_precondition_otp_expired(gateway: RunningGateway, settings: Settings) -> None:
    email = new_email()
    async with gateway_with(gateway, settings, otp_max_lifetime_seconds=0.2) as short_lived:
        started = await initiate(short_lived, email)
        # Wait for the moment the code dies (by the clock the gateway reads), and no longer.
        expires = started.expires_at.ToMicroseconds() / 1e6
        while (left := expires - time.time()) >= 0:
            await asyncio.sleep(left)
        with pytest.raises(aio.AioRpcError) as caught:
            await verify(short_lived, started.login_id, mailed_code(short_lived, email))
    assert reason_of(caught.value) == (grpc.StatusCode.FAILED_PRECONDITION, "OTP_EXPIRED")


async def test_an_unknown_login_id_is_failed_precondition_login_not_found(gateway: RunningGateway) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await verify(gateway, "bm90LWEtcmVhbC1sb2dpbi1pZA", "12345678")
    assert reason_of(caught.value) == (grpc.StatusCode.FAILED_PRECONDITION, "LOGIN_NOT_FOUND")


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        "no-at-sign.example.com",
        "two@@example.com",
        "spaced name@example.com",
        "dot.@example.com",
        "double..dot@example.com",
        "ü@example.com",
        "a@localhost",
        "a@-example.com",
        "a@example.c0m",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
async def test_an_implausible_email_is_invalid_argument_with_a_field_violation(
    gateway: RunningGateway, email: str
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await initiate(gateway, email)
    assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert set(field_violations(caught.value)) == {"email"}


async def test_a_name_with_control_characters_or_too_long_is_invalid_argument(gateway: RunningGateway) -> None:
    for name in ("Bell\x07", "n" * 101):
        with pytest.raises(aio.AioRpcError) as caught:
            await initiate(gateway, new_email(), name=name)
        assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert set(field_violations(caught.value)) == {"name"}


async def test_codes_that_are_not_6_to_8_ascii_digits_are_invalid_argument_and_do_not_count(
    gateway: RunningGateway,
) -> None:
    email = new_email()
    started = await initiate(gateway, email)
    code = mailed_code(gateway, email)
    full_width = "".join(chr(0xFF10 + d) for d in range(1, 7))  # digits, but not ASCII ones
    for bad in ("", "12345", "123456789", "12345a", full_width, " 123456", "12 3456", "+1234567"):
        with pytest.raises(aio.AioRpcError) as caught:
            await verify(gateway, started.login_id, bad)
        assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert set(field_violations(caught.value)) == {"code"}
    with pytest.raises(aio.AioRpcError) as caught:
        await verify(gateway, started.login_id, wrong_code(code))
    assert error_info(caught.value).metadata["attempts_left"] == "2"  # none of the bad inputs was an attempt


async def test_an_empty_or_malformed_login_id_is_invalid_argument(gateway: RunningGateway) -> None:
    for login_id in ("", "has spaces", "x" * 129):
        with pytest.raises(aio.AioRpcError) as caught:
            await verify(gateway, login_id, "12345678")
        assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert set(field_violations(caught.value)) == {"login_id"}


async def test_refresh_session_returns_new_tokens_for_the_same_session(gateway: RunningGateway) -> None:
    delivery = await sign_in(gateway, new_email())
    refreshed = await auth_stub(gateway).RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=delivery.refresh_token), timeout=10
    )
    assert refreshed.access_token != delivery.access_token
    assert refreshed.refresh_token == ""  # no rotation: keep the refresh token you have
    assert refreshed.token_type == "Bearer"
    assert refreshed.expires_in == 3600
    before, after = claims(delivery.access_token), claims(refreshed.access_token)
    assert (after["sub"], after["origin_jti"]) == (before["sub"], before["origin_jti"])


async def test_an_invalid_refresh_token_is_unauthenticated_token_invalid(gateway: RunningGateway) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await auth_stub(gateway).RefreshSession(
            auth_pb2.RefreshSessionRequest(refresh_token="not-a-refresh-token"), timeout=10
        )
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    with pytest.raises(aio.AioRpcError) as caught:
        await auth_stub(gateway).RefreshSession(auth_pb2.RefreshSessionRequest(refresh_token=""), timeout=10)
    assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert set(field_violations(caught.value)) == {"refresh_token"}


async def test_with_refresh_token_rotation_refresh_returns_a_new_refresh_token_and_the_old_one_dies(
    gateway: RunningGateway, settings: Settings, table: str
) -> None:
    endpoints = gateway.devstack.endpoints
    created = await gateway.app.clients.cognito.create_user_pool_client(
        UserPoolId=endpoints.user_pool_id,
        ClientName="booking-gateway-rotating",
        ExplicitAuthFlows=["ALLOW_USER_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        AuthSessionValidity=3,
        PreventUserExistenceErrors="ENABLED",
        RefreshTokenRotation={"Feature": "ENABLED", "RetryGracePeriodSeconds": 0},
    )
    client_id = created["UserPoolClient"]["ClientId"]
    async with gateway_with(
        gateway, settings, app_client_id=client_id, allowed_client_ids=(client_id,), refresh_token_rotation=True
    ) as rotating:
        delivery = await sign_in(rotating, new_email())
        stub = auth_stub(rotating)
        refreshed = await stub.RefreshSession(
            auth_pb2.RefreshSessionRequest(refresh_token=delivery.refresh_token), timeout=10
        )
        assert refreshed.refresh_token
        assert refreshed.refresh_token != delivery.refresh_token
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.RefreshSession(auth_pb2.RefreshSessionRequest(refresh_token=delivery.refresh_token), timeout=10)
        assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")

        # The rotated refresh token is the gateway's delivery too: SignOut with it revokes it at Cognito, so the
        # family needs refusing only until the access token expires (not for the refresh token's lifetime).
        await stub.SignOut(
            auth_pb2.SignOutRequest(refresh_token=refreshed.refresh_token),
            metadata=(("authorization", f"Bearer {refreshed.access_token}"),),
            timeout=10,
        )
        family = jwt.decode(refreshed.access_token, options={"verify_signature": False})["origin_jti"]
        recorded = await DynamoRevocationStore(rotating.app.clients.dynamodb, table).revoked_since(time.time() - 60)
        assert [r.expires_at <= time.time() + 3600 + 60 for r in recorded if r.token_family == family] == [True]
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.RefreshSession(auth_pb2.RefreshSessionRequest(refresh_token=refreshed.refresh_token), timeout=10)
        assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")

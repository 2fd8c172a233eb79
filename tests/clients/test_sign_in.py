"""Sign-in, refresh and sign-out through the library, against the real gateway and the emulator's Cognito."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import stat
from pathlib import Path

import pytest

from booking_client import (
    BookingClient,
    FileSessionStore,
    MemorySessionStore,
    NotSignedIn,
    RateLimited,
    Session,
    Unauthenticated,
    connect,
)
from gateway.devstack import DevStack
from tests.support.gateway import RunningGateway
from tests.support.identity import emulator_sign_in, unique_email
from tests.support.sessions import expired_copy, session_from


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def sign_in(client: BookingClient, devstack: DevStack, email: str) -> Session:
    challenge = await client.initiate_login(email, name="Client Test")
    code = await devstack.mailbox.wait_for_code(email)
    return await client.verify_otp(challenge.login_id, code)


async def test_verify_otp_stores_a_private_session_that_a_later_run_reloads(
    gateway: RunningGateway, devstack: DevStack, tmp_path: Path
) -> None:
    path = tmp_path / "booking-gateway" / "session.json"
    email = unique_email("lib")
    async with connect(gateway.target, tls=False, session_store=FileSessionStore(path)) as client:
        challenge = await client.initiate_login(email)
        assert challenge.login_id
        assert "@" in challenge.destination
        assert email not in challenge.destination  # masked
        assert now() < challenge.expires_at <= now() + datetime.timedelta(minutes=10)
        session = await client.verify_otp(challenge.login_id, await devstack.mailbox.wait_for_code(email))
        assert (session.email, client.session) == (email, session)
        assert session.guest_id.startswith("GST-")
        assert now() + datetime.timedelta(minutes=50) < session.expires_at <= now() + datetime.timedelta(hours=1)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert list((await client.list_reservations()).reservations) == []

    async with connect(gateway.target, tls=False, session_store=FileSessionStore(path)) as later:
        assert later.session == session
        assert list((await later.list_reservations()).reservations) == []


async def test_a_wrong_code_is_otp_invalid_with_attempts_left(client: BookingClient, devstack: DevStack) -> None:
    email = unique_email("wrong")
    challenge = await client.initiate_login(email)
    real = await devstack.mailbox.wait_for_code(email)
    with pytest.raises(Unauthenticated) as caught:
        await client.verify_otp(challenge.login_id, "1" * len(real) if real != "1" * len(real) else "2" * len(real))
    assert caught.value.reason == "OTP_INVALID"
    assert caught.value.metadata["attempts_left"] == "2"
    assert not client.signed_in


async def test_a_second_code_too_soon_is_rate_limited_with_retry_info(client: BookingClient) -> None:
    email = unique_email("soon")
    await client.initiate_login(email)
    with pytest.raises(RateLimited) as caught:
        await client.initiate_login(email)
    assert caught.value.reason == "RATE_LIMITED"
    assert caught.value.retry_after_seconds is not None
    assert 0 < caught.value.retry_after_seconds <= 60


async def test_an_access_token_about_to_expire_is_refreshed_before_the_call(
    gateway: RunningGateway, devstack: DevStack, tmp_path: Path
) -> None:
    stale = session_from(await emulator_sign_in(devstack), expires_in=datetime.timedelta(seconds=30))
    store = FileSessionStore(tmp_path / "session.json")
    store.save(stale)
    async with connect(gateway.target, tls=False, session_store=store) as client:
        await client.list_reservations()
        fresh = client.session
    assert fresh is not None
    assert fresh.access_token != stale.access_token
    assert fresh.refresh_token == stale.refresh_token  # no rotation: the refresh token is kept
    assert fresh.expires_at > now() + datetime.timedelta(minutes=50)
    assert (fresh.guest_id, fresh.email, fresh.sub) == (stale.guest_id, stale.email, stale.sub)
    assert store.load() == fresh


async def test_a_token_the_gateway_calls_expired_is_refreshed_and_the_call_retried_once(
    gateway: RunningGateway, devstack: DevStack
) -> None:
    tokens = await emulator_sign_in(devstack)
    # The stored expiry says "an hour left", but the token itself expired: only the gateway's answer tells.
    lying = dataclasses.replace(session_from(tokens), access_token=expired_copy(tokens.access_token))
    store = MemorySessionStore(lying)
    async with connect(gateway.target, tls=False, session_store=store) as client:
        page = await client.list_reservations()
        assert list(page.reservations) == []
        assert client.session is not None
        assert client.session.access_token != lying.access_token
    assert store.load() == client.session


async def test_a_refused_refresh_token_clears_the_session(
    gateway: RunningGateway, devstack: DevStack, tmp_path: Path
) -> None:
    tokens = await emulator_sign_in(devstack)
    dead = dataclasses.replace(
        session_from(tokens, expires_in=datetime.timedelta(minutes=-5)), refresh_token="not-a-refresh-token"
    )
    store = FileSessionStore(tmp_path / "session.json")
    store.save(dead)
    async with connect(gateway.target, tls=False, session_store=store) as client:
        with pytest.raises(Unauthenticated) as caught:
            await client.list_reservations()
        assert caught.value.reason == "TOKEN_INVALID"
        assert not client.signed_in
        with pytest.raises(NotSignedIn):
            await client.refresh()
    assert not store.path.exists()


async def test_sign_out_clears_the_session_and_the_gateway_refuses_its_tokens(
    gateway: RunningGateway, devstack: DevStack, tmp_path: Path
) -> None:
    store = FileSessionStore(tmp_path / "session.json")
    async with connect(gateway.target, tls=False, session_store=store) as client:
        session = await sign_in(client, devstack, unique_email("bye"))
        assert store.path.exists()
        await client.sign_out()
        assert not client.signed_in
        assert not store.path.exists()
        await client.sign_out()  # harmless when signed out

    # Another copy of the same session (another device, an old backup) is refused now, and forgotten.
    elsewhere = MemorySessionStore(session)
    async with connect(gateway.target, tls=False, session_store=elsewhere) as other:
        with pytest.raises(Unauthenticated) as caught:
            await other.list_reservations()
        assert caught.value.reason == "TOKEN_REVOKED"
        assert not other.signed_in
    assert elsewhere.load() is None
    # And its refresh token was revoked at Cognito.
    async with connect(gateway.target, tls=False, session_store=MemorySessionStore(session)) as third:
        with pytest.raises(Unauthenticated):
            await third.refresh()
        assert not third.signed_in


async def test_the_library_logs_no_token_or_code(
    gateway: RunningGateway, devstack: DevStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="booking_client")
    email = unique_email("quiet")
    async with connect(gateway.target, tls=False) as client:
        challenge = await client.initiate_login(email)
        code = await devstack.mailbox.wait_for_code(email)
        session = await client.verify_otp(challenge.login_id, code)
        refreshed = await client.refresh()
        await client.sign_out()
    secrets = {
        code,
        session.access_token,
        session.id_token,
        session.refresh_token,
        refreshed.access_token,
        refreshed.id_token,
    }
    ours = [record for record in caplog.records if record.name.startswith("booking_client")]
    assert ours  # the library did log (sign-in, refresh, sign-out)
    text = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in ours)
    for secret in secrets:
        assert secret not in text

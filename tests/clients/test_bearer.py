"""The library attaches the stored session's bearer and reports failures as typed errors with their reasons."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from booking_client import MemorySessionStore, Unauthenticated, connect
from gateway.devstack import DevStack
from tests.support.gateway import RunningGateway
from tests.support.identity import emulator_sign_in
from tests.support.sessions import session_from


async def test_without_a_session_a_required_call_is_unauthenticated_token_missing(gateway: RunningGateway) -> None:
    async with connect(gateway.target, tls=False) as client:
        assert not client.signed_in
        with pytest.raises(Unauthenticated) as caught:
            await client.list_reservations()
    error = caught.value
    assert error.code is grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "TOKEN_MISSING"
    assert error.request_id  # the gateway's x-request-id trailer, to quote in a report
    assert "TOKEN_MISSING" in str(error)


async def test_the_stored_access_token_is_sent_as_the_bearer(gateway: RunningGateway, devstack: DevStack) -> None:
    tokens = await emulator_sign_in(devstack)
    store = MemorySessionStore(session_from(tokens))
    async with connect(gateway.target, tls=False, session_store=store) as client:
        page = await client.list_reservations()  # REQUIRED: answered only because the bearer was sent
        assert list(page.reservations) == []
        assert client.session == store.load()


async def test_a_token_the_gateway_refuses_surfaces_with_its_reason_and_is_not_retried(
    gateway: RunningGateway, devstack: DevStack
) -> None:
    tokens = await emulator_sign_in(devstack)
    # An ID token is a valid JWT but the wrong kind of token: TOKEN_WRONG_USE, not something a refresh fixes.
    wrong = dataclasses.replace(session_from(tokens), access_token=tokens.id_token)
    store = MemorySessionStore(wrong)
    async with connect(gateway.target, tls=False, session_store=store) as client:
        with pytest.raises(Unauthenticated) as caught:
            await client.list_reservations()
        assert caught.value.reason == "TOKEN_WRONG_USE"
        assert client.session == wrong  # kept: nothing says the session is gone
    assert store.load() == wrong

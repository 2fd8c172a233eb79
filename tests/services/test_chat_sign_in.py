"""The in-chat sign-in service on its own: the real session store on the emulator, the real bearer verifier and
the emulator's real tokens. It binds the session and delivers the tokens onto the turn's stream, and nothing
else (no binding and no delivery when anything is wrong; no token in a log)."""

from __future__ import annotations

import logging
import secrets
import time

import pytest

from gateway.adapters.dynamodb.session_store import DynamoChatSessionStore
from gateway.domain import GuestId, Sub, TokenDelivery
from gateway.errors import SessionNotOwnedError, TokenMalformedError, UpstreamUnavailableError
from gateway.services.chat.events import ChatEventBody, TokenDeliveryEvent
from gateway.services.chat.sign_in import ChatSignIn
from tests.services.conftest import Person
from tests.support.gateway import RunningGateway
from tests.support.identity import Tokens


def delivery_for(tokens: Tokens, sub: str, guest_id: str = "GST-2026-SIGNED") -> TokenDelivery:
    return TokenDelivery(
        id_token=tokens.id_token,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in_seconds=3600,
        token_type="Bearer",
        guest_id=GuestId(guest_id),
        email="jane@example.com",
        sub=Sub(sub),
    )


async def new_session(store: DynamoChatSessionStore) -> str:
    now = time.time()
    record = await store.create(
        secrets.token_urlsafe(16), lease_id=secrets.token_hex(8), lease_until=now + 60, expires_at=now + 600
    )
    return record.session_id


@pytest.fixture
def sign_in(store: DynamoChatSessionStore, gateway: RunningGateway) -> ChatSignIn:
    return ChatSignIn(store, gateway.app.verifier)


async def test_a_completed_sign_in_binds_the_session_and_delivers_the_tokens_on_the_stream(
    sign_in: ChatSignIn, store: DynamoChatSessionStore, person: Person, caplog: pytest.LogCaptureFixture
) -> None:
    session_id = await new_session(store)
    delivery = delivery_for(person.tokens, person.principal.sub)
    emitted: list[ChatEventBody] = []

    with caplog.at_level(logging.DEBUG):
        principal = await sign_in.complete(session_id, delivery, emitted.append)

    assert principal.sub == person.principal.sub
    assert (principal.guest_id, principal.email) == ("GST-2026-SIGNED", "jane@example.com")
    assert emitted == [TokenDeliveryEvent(delivery)]
    record = await store.get(session_id)
    assert record is not None
    assert (record.owner_sub, record.guest_id) == (person.principal.sub, "GST-2026-SIGNED")
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in (person.tokens.access_token, person.tokens.id_token, person.tokens.refresh_token):
        assert secret not in logged


async def test_tokens_of_somebody_other_than_the_login_named_are_neither_bound_nor_delivered(
    sign_in: ChatSignIn, store: DynamoChatSessionStore, person: Person
) -> None:
    session_id = await new_session(store)
    emitted: list[ChatEventBody] = []

    with pytest.raises(UpstreamUnavailableError):
        await sign_in.complete(session_id, delivery_for(person.tokens, "somebody-else"), emitted.append)

    assert emitted == []
    record = await store.get(session_id)
    assert record is not None
    assert record.owner_sub is None


async def test_a_token_the_verifier_refuses_is_neither_bound_nor_delivered(
    sign_in: ChatSignIn, store: DynamoChatSessionStore, person: Person
) -> None:
    session_id = await new_session(store)
    forged = Tokens(access_token="not-a-jwt", id_token="id", refresh_token="refresh")
    emitted: list[ChatEventBody] = []

    with pytest.raises(TokenMalformedError):
        await sign_in.complete(session_id, delivery_for(forged, person.principal.sub), emitted.append)

    assert emitted == []
    record = await store.get(session_id)
    assert record is not None
    assert record.owner_sub is None


async def test_a_session_bound_to_somebody_else_delivers_nothing(
    sign_in: ChatSignIn, store: DynamoChatSessionStore, person: Person
) -> None:
    session_id = await new_session(store)
    await store.bind_owner(session_id, sub=Sub("the-first-owner"), guest_id=None)
    emitted: list[ChatEventBody] = []

    with pytest.raises(SessionNotOwnedError):
        await sign_in.complete(session_id, delivery_for(person.tokens, person.principal.sub), emitted.append)

    assert emitted == []
    record = await store.get(session_id)
    assert record is not None
    assert record.owner_sub == "the-first-owner"

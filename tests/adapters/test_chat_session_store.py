"""Chat sessions in DynamoDB (the emulator): owner binding, the turn lease, the commit point, time to live."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from gateway.adapters.aws import open_aws_clients
from gateway.adapters.dynamodb.session_store import DynamoChatSessionStore, decode_entry, encode_entry
from gateway.devstack import DevStack
from gateway.domain import AssistantText, ConversationEntry, GuestId, Sub, ToolCall, ToolResult, UserText
from gateway.errors import SessionNotFoundError, SessionNotOwnedError
from gateway.ports import ChatTurnRecord


@pytest.fixture(scope="module")
async def store(devstack: DevStack) -> AsyncIterator[DynamoChatSessionStore]:
    async with open_aws_clients(devstack.endpoints.target) as clients:
        yield DynamoChatSessionStore(clients.dynamodb, devstack.endpoints.table_name)


def new_id() -> str:
    return secrets.token_urlsafe(16)


async def created(store: DynamoChatSessionStore, *, ttl: float = 3600) -> str:
    session_id = new_id()
    now = time.time()
    await store.create(session_id, lease_id="first", lease_until=now + 60, expires_at=now + ttl)
    assert await store.finish_turn(
        session_id,
        lease_id="first",
        turn=ChatTurnRecord(0, (UserText("hi"),), "END_TURN"),
        next_sequence=4,
        memory={"k": "v"},
        expires_at=now + ttl,
    )
    return session_id


async def test_two_replicas_binding_one_session_to_two_people_cannot_both_win(store: DynamoChatSessionStore) -> None:
    session_id = await created(store)

    outcomes = await asyncio.gather(
        *(store.bind_owner(session_id, sub=Sub(f"sub-{n}"), guest_id=GuestId(f"GST-{n}")) for n in range(8)),
        return_exceptions=True,
    )

    winners = [n for n, outcome in enumerate(outcomes) if outcome is None]
    assert len(winners) == 1
    assert all(isinstance(o, SessionNotOwnedError) for o in outcomes if o is not None)
    record = await store.get(session_id)
    assert record is not None
    assert record.owner_sub == f"sub-{winners[0]}"
    assert record.guest_id == f"GST-{winners[0]}"
    # Binding the owner again is harmless and keeps the guest id when none is given.
    await store.bind_owner(session_id, sub=Sub(f"sub-{winners[0]}"), guest_id=None)
    again = await store.get(session_id)
    assert again is not None
    assert again.guest_id == f"GST-{winners[0]}"


async def test_binding_an_unknown_session_is_not_found(store: DynamoChatSessionStore) -> None:
    with pytest.raises(SessionNotFoundError):
        await store.bind_owner(new_id(), sub=Sub("sub"), guest_id=None)


async def test_the_turn_lease_is_held_by_one_turn_until_it_finishes_or_expires(store: DynamoChatSessionStore) -> None:
    session_id = await created(store)
    now = time.time()

    held = await store.acquire(session_id, owner_sub=None, lease_id="a", lease_until=now + 60, now=now)
    assert held is not None
    assert (held.lease_id, held.next_sequence, held.turn_count, held.memory) == ("a", 4, 1, {"k": "v"})
    assert await store.acquire(session_id, owner_sub=None, lease_id="b", lease_until=now + 60, now=now) is None
    # Past its end (a crashed replica), the lease can be taken over.
    taken = await store.acquire(session_id, owner_sub=None, lease_id="c", lease_until=now + 120, now=now + 61)
    assert taken is not None
    assert taken.lease_id == "c"

    # The turn that lost its lease cannot commit; nothing moves.
    lost = await store.finish_turn(
        session_id,
        lease_id="a",
        turn=ChatTurnRecord(1, (UserText("late"),), "END_TURN"),
        next_sequence=9,
        memory={},
        expires_at=now + 3600,
    )
    assert lost is False
    record = await store.get(session_id)
    assert record is not None
    assert (record.turn_count, record.next_sequence, record.lease_id) == (1, 4, "c")
    # The uncommitted turn item is never read back.
    assert [t.number for t in await store.recent_turns(session_id, before=record.turn_count, limit=10, now=now)] == [0]


async def test_the_lease_is_refused_when_the_owner_changed_meanwhile(store: DynamoChatSessionStore) -> None:
    session_id = await created(store)
    await store.bind_owner(session_id, sub=Sub("owner"), guest_id=None)
    now = time.time()

    assert await store.acquire(session_id, owner_sub=None, lease_id="x", lease_until=now + 60, now=now) is None
    held = await store.acquire(session_id, owner_sub=Sub("owner"), lease_id="x", lease_until=now + 60, now=now)
    assert held is not None


async def test_an_unknown_or_expired_session_is_gone(store: DynamoChatSessionStore) -> None:
    now = time.time()
    with pytest.raises(SessionNotFoundError):
        await store.acquire(new_id(), owner_sub=None, lease_id="x", lease_until=now + 60, now=now)

    expired = new_id()
    await store.create(expired, lease_id="x", lease_until=now - 10, expires_at=now - 5)
    assert await store.get(expired) is None
    with pytest.raises(SessionNotFoundError):
        await store.acquire(expired, owner_sub=None, lease_id="y", lease_until=now + 60, now=now)


async def test_recent_turns_are_the_last_ones_oldest_first(store: DynamoChatSessionStore) -> None:
    session_id = await created(store)
    now = time.time()
    for number in range(1, 6):
        held = await store.acquire(session_id, owner_sub=None, lease_id=f"t{number}", lease_until=now + 60, now=now)
        assert held is not None
        assert await store.finish_turn(
            session_id,
            lease_id=f"t{number}",
            turn=ChatTurnRecord(number, (UserText(f"message {number}"),), "END_TURN"),
            next_sequence=10 + number,
            memory={"turn": number},
            expires_at=now + 3600,
        )

    turns = await store.recent_turns(session_id, before=6, limit=3, now=now)
    assert [t.number for t in turns] == [3, 4, 5]
    assert turns[0].entries == (UserText("message 3"),)
    record = await store.get(session_id)
    assert record is not None
    assert (record.turn_count, record.next_sequence, record.memory) == (6, 15, {"turn": 5})


def test_conversation_entries_survive_a_round_trip_through_json() -> None:
    entries: list[ConversationEntry] = [
        UserText("book it"),
        AssistantText("Booking."),
        ToolCall("c1", "create_reservation", {"property_id": "harbor-loft", "guests": 2}),
        ToolResult("c1", "create_reservation", True, {"reservation": {"reservation_id": "RES-23456789"}}),
    ]
    assert [decode_entry(encode_entry(e)) for e in entries] == entries


async def test_releasing_a_lease_frees_the_session_only_for_its_holder(store: DynamoChatSessionStore) -> None:
    session_id = await created(store)
    now = time.time()
    assert await store.acquire(session_id, owner_sub=None, lease_id="mine", lease_until=now + 60, now=now)

    await store.release(session_id, lease_id="not-mine")
    record = await store.get(session_id)
    assert record is not None
    assert record.lease_id == "mine"

    await store.release(session_id, lease_id="mine")
    record = await store.get(session_id)
    assert record is not None
    assert record.lease_id is None
    assert (record.turn_count, record.next_sequence) == (1, 4)

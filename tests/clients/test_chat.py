"""Chat through the library: typed events, the conversation kept, TokenDelivery captured and used."""

from __future__ import annotations

import dataclasses
import datetime
import stat
from pathlib import Path

from booking_client import (
    ApprovalRequested,
    BookingClient,
    ChatEvent,
    FileSessionStore,
    MemorySessionStore,
    SessionStarted,
    SignedIn,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnComplete,
    connect,
)
from gateway.devstack import DevStack
from tests.support.gateway import RunningGateway
from tests.support.identity import emulator_sign_in, unique_email
from tests.support.reservations import days_ahead
from tests.support.sessions import expired_copy, session_from


async def turn(client: BookingClient, message: str) -> list[ChatEvent]:
    return [event async for event in client.chat(message)]


def text(events: list[ChatEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def test_the_seed_journey_anonymous_then_signed_in_by_the_agent(
    gateway: RunningGateway, devstack: DevStack, tmp_path: Path
) -> None:
    store = FileSessionStore(tmp_path / "session.json")
    email = unique_email("journey")
    check_in, check_out = days_ahead(420), days_ahead(422)
    async with connect(gateway.target, tls=False, session_store=store) as client:
        first = await turn(client, f"what's available {check_in.isoformat()} to {check_out.isoformat()}?")
        started = first[0]
        assert isinstance(started, SessionStarted)
        assert (started.resumed, started.authenticated, started.guest_id) == (False, False, "")
        assert client.chat_session_id == started.session_id
        assert any(isinstance(e, ToolCallStarted) and e.name == "check_availability" for e in first)
        assert any(isinstance(e, ToolCallFinished) and e.name == "check_availability" and e.ok for e in first)
        assert "Harbor Loft" in text(first)
        last = first[-1]
        assert isinstance(last, TurnComplete)
        assert last.stop_reason == "END_TURN"
        assert last.output_tokens > 0

        second = await turn(client, "book the Harbor Loft for 2 guests")
        assert second[0] == SessionStarted(second[0].sequence, started.session_id, True, False, "")
        assert "email" in text(second)
        await turn(client, f"Jane Journey, {email}")
        signed = await turn(client, await devstack.mailbox.wait_for_code(email))
        delivered = [event for event in signed if isinstance(event, SignedIn)]
        assert len(delivered) == 1
        session = delivered[0].session
        assert (session.email, client.session) == (email, session)
        assert store.load() == session
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
        # The booking waits for the person's decision: the reply exposes it, nothing is booked yet.
        [asked] = [e for e in signed if isinstance(e, ApprovalRequested)]
        pending = client.pending_approval
        assert pending == asked
        assert asked.tool_name == "create_reservation"
        last_signed = signed[-1]
        assert isinstance(last_signed, TurnComplete)
        assert last_signed.stop_reason == "AWAITING_APPROVAL"
        assert asked.summary.startswith("Book Harbor Loft, ")
        assert ", 2 nights, 2 guests, " in asked.summary
        assert asked.expires_at > datetime.datetime.now(datetime.UTC)
        assert not any(isinstance(e, ToolCallFinished) and e.name == "create_reservation" for e in signed)
        assert not (await client.list_reservations()).reservations

        approved = [event async for event in client.approve(asked.approval_id)]
        assert any(isinstance(e, ToolCallFinished) and e.name == "create_reservation" and e.ok for e in approved)
        assert "Booked!" in text(approved)
        assert client.pending_approval is None

        mine = await turn(client, "what are my reservations?")
        assert mine[0] == SessionStarted(mine[0].sequence, started.session_id, True, True, session.guest_id)
        page = await client.list_reservations()
        assert [(r.property_id, r.check_in, r.check_out, r.guests) for r in page.reservations] == [
            ("harbor-loft", check_in.isoformat(), check_out.isoformat(), 2)
        ]
        assert page.reservations[0].reservation_id in text(mine)

    events = first + second + signed + approved + mine
    sequences = [event.sequence for event in events]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)
    assert session.access_token not in repr(events)
    assert session.refresh_token not in repr(events)


async def test_a_chat_with_an_expired_token_is_refreshed_and_retried(
    gateway: RunningGateway, devstack: DevStack
) -> None:
    tokens = await emulator_sign_in(devstack)
    lying = dataclasses.replace(session_from(tokens), access_token=expired_copy(tokens.access_token))
    async with connect(gateway.target, tls=False, session_store=MemorySessionStore(lying)) as client:
        events = await turn(client, "hello")
        started = events[0]
        assert isinstance(started, SessionStarted)
        assert started.authenticated
        assert client.session is not None
        assert client.session.access_token != lying.access_token


async def test_after_sign_out_the_next_message_starts_an_anonymous_conversation(
    gateway: RunningGateway, devstack: DevStack
) -> None:
    store = MemorySessionStore(session_from(await emulator_sign_in(devstack)))
    async with connect(gateway.target, tls=False, session_store=store) as client:
        bound = await turn(client, "hello")  # a conversation with a bearer belongs to that person
        assert isinstance(bound[0], SessionStarted)
        assert bound[0].authenticated
        await client.sign_out()
        assert client.chat_session_id is None
        anonymous = await turn(client, "hello again")
        assert isinstance(anonymous[0], SessionStarted)
        assert not anonymous[0].authenticated
        assert anonymous[0].session_id != bound[0].session_id


async def test_a_conversation_the_gateway_no_longer_knows_is_restarted(client: BookingClient) -> None:
    client.resume_chat("Zm9yZ290dGVuLXNlc3Npb24")
    events = await turn(client, "hello")
    started = events[0]
    assert isinstance(started, SessionStarted)
    assert not started.resumed
    assert started.session_id != "Zm9yZ290dGVuLXNlc3Npb24"
    assert client.chat_session_id == started.session_id


async def test_leaving_the_loop_early_cancels_the_stream_and_the_client_stays_usable(client: BookingClient) -> None:
    async for event in client.chat("hello"):
        assert isinstance(event, SessionStarted)
        break
    events = await turn(client, "what can you do?")
    assert isinstance(events[-1], TurnComplete)

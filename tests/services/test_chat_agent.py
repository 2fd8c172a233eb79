"""The agent runtime: the turn loop over the real DynamoDB session store on the emulator, the real bearer
verifier, and small in-test implementations of the booking and sign-in ports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from contextlib import aclosing
from typing import Any

import pytest

from gateway.adapters.dynamodb.approval_store import DynamoApprovalStore
from gateway.adapters.dynamodb.session_store import DynamoChatSessionStore, encode_entry
from gateway.adapters.scripted_agent import ScriptedAgent
from gateway.domain import ApprovalDecision, GuestProfile, Principal, RoundEnd, Sub, TextChunk, ToolCall, Usage
from gateway.errors import SessionNotOwnedError, TokenMissingError, UpstreamUnavailableError
from gateway.ports import AgentModel, BearerVerifier
from gateway.services.chat import ChatLimits, ChatService, ChatTurnRequest, ToolRegistry
from gateway.services.chat.events import (
    ApprovalRequested,
    ChatEvent,
    SessionStarted,
    StopReason,
    TextDelta,
    TokenDeliveryEvent,
    ToolCallFinished,
    TurnComplete,
)
from gateway.services.chat.tools import login_key
from tests.services.chat_fakes import FakeBooking, FakeSignIn, HangingModel, LoopingModel, ScriptModel
from tests.services.conftest import Person
from tests.support.gateway import RunningGateway
from tests.support.identity import emulator_sign_in


def service(
    store: DynamoChatSessionStore,
    model: AgentModel,
    verifier: BearerVerifier,
    booking: FakeBooking,
    sign_in: FakeSignIn,
    **limits: Any,
) -> ChatService:
    return ChatService(
        store,
        model,
        ToolRegistry(booking=booking, sign_in=sign_in),
        verifier,
        limits=ChatLimits(**limits),
        approvals=DynamoApprovalStore(store._dynamodb, store._table),
        booking=booking,
    )


async def turn(
    chat: ChatService, message: str, session_id: str = "", principal: Principal | None = None
) -> list[ChatEvent]:
    request = ChatTurnRequest(session_id=session_id, message=message, principal=principal, client="127.0.0.1")
    async with aclosing(chat.chat(request)) as events:
        return [event async for event in events]


async def decide(
    chat: ChatService, session_id: str, decision: ApprovalDecision, principal: Principal | None
) -> list[ChatEvent]:
    request = ChatTurnRequest(
        session_id=session_id, message="", principal=principal, client="127.0.0.1", decision=decision
    )
    async with aclosing(chat.chat(request)) as events:
        return [event async for event in events]


def text(events: Sequence[ChatEvent]) -> str:
    return "".join(e.body.text for e in events if isinstance(e.body, TextDelta))


def finished(events: Sequence[ChatEvent]) -> list[ToolCallFinished]:
    return [e.body for e in events if isinstance(e.body, ToolCallFinished)]


def complete(events: Sequence[ChatEvent]) -> TurnComplete:
    last = events[-1].body
    assert isinstance(last, TurnComplete)
    return last


def session_of(events: Sequence[ChatEvent]) -> str:
    first = events[0].body
    assert isinstance(first, SessionStarted)
    return first.session_id


def turn_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("chat-turn-")]


async def test_the_seed_journey_signs_in_inside_the_chat_and_books_as_the_verified_person(
    gateway: RunningGateway, store: DynamoChatSessionStore, person: Person
) -> None:
    booking = FakeBooking()
    sign_in = FakeSignIn(person.tokens, person.principal.sub)
    chat = service(store, ScriptedAgent(), gateway.app.verifier, booking, sign_in)

    available = await turn(chat, "Hi! What's available March 15-20?")
    session_id = session_of(available)
    assert [(f.name, f.ok) for f in finished(available)] == [("check_availability", True)]
    assert "Harbor Loft" in text(available)

    asked = await turn(chat, "Book the Harbor Loft for 2 guests", session_id)
    # Free, and its price said, before the person goes through a sign-in.
    assert [(f.name, f.ok) for f in finished(asked)] == [("check_availability", True)]
    assert "in total" in text(asked)
    assert "name and email" in text(asked)

    sent = await turn(chat, "John Doe, john.doe@example.com", session_id)
    assert [(f.name, f.ok) for f in finished(sent)] == [("start_login", True)]
    assert sign_in.started == {login_key(session_id): "john.doe@example.com"}

    wrong = await turn(chat, "87654321", session_id)
    assert [(f.name, f.ok) for f in finished(wrong)] == [("verify_code", False)]
    assert "2 attempts left" in text(wrong)

    verified = await turn(chat, "my code is 12345678", session_id)
    kinds = [type(e.body).__name__ for e in verified]
    assert kinds.index("ToolCallStarted") < kinds.index("TokenDeliveryEvent") < kinds.index("ToolCallFinished")
    delivered = next(e.body for e in verified if isinstance(e.body, TokenDeliveryEvent))
    assert delivered.delivery.access_token == person.tokens.access_token
    assert [(f.name, f.ok) for f in finished(verified)] == [("verify_code", True)]
    assert finished(verified)[0].summary == "verified as guest GST-2026-TESTED"
    [approval] = [e.body for e in verified if isinstance(e.body, ApprovalRequested)]
    assert complete(verified).stop_reason is StopReason.AWAITING_APPROVAL
    assert approval.summary.startswith("Book Harbor Loft, 15\u201320 Mar 2027, 5 nights, 2 guests, ")
    assert booking.reservations == []

    decision = ApprovalDecision(approval.approval_id, approve=True)
    approved = await decide(chat, session_id, decision, person.principal)
    assert [(f.name, f.ok) for f in finished(approved)] == [("create_reservation", True)]
    [reservation] = booking.reservations
    assert reservation.owner == person.principal.sub
    assert (reservation.stay.property_id, reservation.stay.guests) == ("harbor-loft", 2)
    assert reservation.reservation_id in text(approved)

    # The session now belongs to the person who signed in.
    record = await store.get(session_id)
    assert record is not None
    assert record.owner_sub == person.principal.sub
    assert record.guest_id == "GST-2026-TESTED"
    with pytest.raises(TokenMissingError):
        await turn(chat, "what are my reservations?", session_id)
    mine = await turn(chat, "what are my reservations?", session_id, person.principal)
    assert reservation.reservation_id in text(mine)

    # No token and no code is in the stored conversation.
    stored = json.dumps(
        [encode_entry(e) for t in await store.recent_turns(session_id, before=99, limit=99, now=0) for e in t.entries]
    )
    for secret in (person.tokens.access_token, person.tokens.id_token, person.tokens.refresh_token):
        assert secret not in stored
    assert "12345678" not in stored
    assert "87654321" not in stored
    assert "[redacted]" in stored


async def test_authenticated_tools_run_as_the_turns_principal_never_as_an_argument(
    gateway: RunningGateway, store: DynamoChatSessionStore, person: Person
) -> None:
    booking = FakeBooking()
    model = ScriptModel(
        [
            [
                ToolCall("c1", "list_my_reservations", {"sub": "someone-else"}),
                ToolCall("c2", "create_reservation", {"property_id": "harbor-loft", "check_in": "2030-01-01"}),
                RoundEnd(True, Usage()),
            ],
            [TextChunk("ok"), RoundEnd(False, Usage())],
        ]
    )
    chat = service(store, model, gateway.app.verifier, booking, FakeSignIn(person.tokens, person.principal.sub))

    events = await turn(chat, "show me", principal=None)

    results = finished(events)
    assert [(r.name, r.ok) for r in results] == [("list_my_reservations", False), ("create_reservation", False)]
    assert results[0].summary == "sub: unknown argument"
    assert results[1].summary == "check_out: required"
    assert complete(events).stop_reason is StopReason.END_TURN
    # Well-formed but anonymous: refused as a result the model reads.
    model2 = ScriptModel(
        [[ToolCall("c3", "list_my_reservations", {}), RoundEnd(True, Usage())], [RoundEnd(False, Usage())]]
    )
    chat2 = service(store, model2, gateway.app.verifier, booking, FakeSignIn(person.tokens, person.principal.sub))
    events2 = await turn(chat2, "show me")
    assert finished(events2)[0].ok is False
    last_result = model2.seen[1][-1]
    assert getattr(last_result, "content", {}).get("error") == "SIGN_IN_REQUIRED"


async def test_a_turn_is_bounded_in_model_rounds(
    gateway: RunningGateway, store: DynamoChatSessionStore, person: Person
) -> None:
    model = LoopingModel()
    chat = service(
        store, model, gateway.app.verifier, FakeBooking(), FakeSignIn(person.tokens, person.principal.sub), max_rounds=3
    )

    events = await turn(chat, "loop")

    assert model.rounds == 3
    assert complete(events).stop_reason is StopReason.MAX_ROUNDS
    assert complete(events).usage == Usage(30, 9)
    assert len(finished(events)) == 3


async def test_a_turn_is_bounded_in_time_and_the_stalled_model_stream_is_closed(
    gateway: RunningGateway, store: DynamoChatSessionStore, person: Person
) -> None:
    model = HangingModel()
    chat = service(
        store,
        model,
        gateway.app.verifier,
        FakeBooking(),
        FakeSignIn(person.tokens, person.principal.sub),
        turn_timeout_seconds=0.3,
    )

    events = await turn(chat, "hello")

    assert complete(events).stop_reason is StopReason.TIMEOUT
    assert text(events) == "Thinking"
    assert model.closed
    assert not turn_tasks()


async def test_cancelling_the_stream_cancels_the_running_tool_and_frees_the_session(
    gateway: RunningGateway, store: DynamoChatSessionStore, person: Person
) -> None:
    booking = FakeBooking(gate=asyncio.Event())
    model = ScriptModel(
        [
            [
                TextChunk("Booking now."),
                ToolCall(
                    "c1",
                    "create_reservation",
                    {"property_id": "harbor-loft", "check_in": "2030-01-01", "check_out": "2030-01-03", "guests": 2},
                ),
                RoundEnd(True, Usage()),
            ]
        ]
    )
    chat = service(store, model, gateway.app.verifier, booking, FakeSignIn(person.tokens, person.principal.sub))
    held = await turn(chat, "book", "", person.principal)
    [approval] = [e.body for e in held if isinstance(e.body, ApprovalRequested)]
    session_id = session_of(held)
    seen: list[ChatEvent] = []

    async def consume() -> None:
        # The approved booking runs in the decision's turn, and hangs there.
        request = ChatTurnRequest(
            session_id=session_id,
            message="",
            principal=person.principal,
            decision=ApprovalDecision(approval.approval_id, approve=True),
        )
        async with aclosing(chat.chat(request)) as events:
            async for event in events:
                seen.append(event)

    consumer = asyncio.create_task(consume())
    await asyncio.wait_for(booking.create_started.wait(), timeout=10)
    assert turn_tasks()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    assert booking.create_cancelled
    assert booking.reservations == []
    assert not turn_tasks()
    assert chat.load.open == 0
    record = await store.get(session_id)
    assert record is not None
    assert record.lease_id is None
    assert record.next_sequence > seen[-1].sequence
    recorded = (await store.recent_turns(session_id, before=record.turn_count, limit=5, now=0))[-1]
    assert recorded.stop_reason == "INTERRUPTED"
    answered = [e for e in recorded.entries if getattr(e, "call_id", "") == "c1"]
    assert [type(e).__name__ for e in answered] == ["ToolResult"]


async def test_a_model_service_failure_ends_the_turn_with_model_error(
    gateway: RunningGateway, store: DynamoChatSessionStore, person: Person
) -> None:
    model = ScriptModel([[TextChunk("Hel"), UpstreamUnavailableError("down")]])
    chat = service(store, model, gateway.app.verifier, FakeBooking(), FakeSignIn(person.tokens, person.principal.sub))

    events = await turn(chat, "hello")

    assert text(events) == "Hel"
    assert complete(events).stop_reason is StopReason.MODEL_ERROR


async def test_a_bug_in_the_model_fails_the_call_and_still_frees_the_session(
    gateway: RunningGateway, store: DynamoChatSessionStore, person: Person
) -> None:
    model = ScriptModel([[TextChunk("Hel"), RuntimeError("bug")], [TextChunk("fine"), RoundEnd(False, Usage())]])
    chat = service(store, model, gateway.app.verifier, FakeBooking(), FakeSignIn(person.tokens, person.principal.sub))
    seen: list[ChatEvent] = []

    with pytest.raises(RuntimeError, match="bug"):
        async with aclosing(chat.chat(ChatTurnRequest(session_id="", message="hello", principal=None))) as events:
            async for event in events:
                seen.append(event)

    assert not turn_tasks()
    following = await turn(chat, "again", session_of(seen))
    assert text(following) == "fine"


async def test_a_session_bound_to_one_person_refuses_another(
    gateway: RunningGateway, store: DynamoChatSessionStore, person: Person
) -> None:
    other_tokens = await emulator_sign_in(gateway.devstack)
    other = await gateway.app.verifier.verify(other_tokens.access_token)
    chat = service(
        store, ScriptedAgent(), gateway.app.verifier, FakeBooking(), FakeSignIn(person.tokens, person.principal.sub)
    )
    session_id = session_of(await turn(chat, "hello", principal=person.principal))

    with pytest.raises(SessionNotOwnedError):
        await turn(chat, "hello", session_id, other)
    with pytest.raises(TokenMissingError):
        await turn(chat, "hello", session_id)


async def test_signing_in_is_refused_when_already_signed_in(
    gateway: RunningGateway, store: DynamoChatSessionStore, person: Person
) -> None:
    model = ScriptModel(
        [
            [ToolCall("c1", "start_login", {"email": "x@example.com"}), RoundEnd(True, Usage())],
            [RoundEnd(False, Usage())],
        ]
    )
    sign_in = FakeSignIn(person.tokens, person.principal.sub)
    chat = service(store, model, gateway.app.verifier, FakeBooking(), sign_in)

    events = await turn(chat, "sign me in", principal=person.principal)

    assert [(f.name, f.ok) for f in finished(events)] == [("start_login", False)]
    assert sign_in.started == {}
    assert model.facts[0].authenticated


async def test_concurrent_turns_of_one_session_never_overlap(
    gateway: RunningGateway, store: DynamoChatSessionStore, person: Person
) -> None:
    chat = service(
        store, ScriptedAgent(), gateway.app.verifier, FakeBooking(), FakeSignIn(person.tokens, person.principal.sub)
    )
    session_id = session_of(await turn(chat, "hello"))

    turns = await asyncio.gather(*(turn(chat, f"thanks {n}", session_id) for n in range(4)))

    numbers = sorted(e.sequence for events in turns for e in events)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    for events in turns:
        sequences = [e.sequence for e in events]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    record = await store.get(session_id)
    assert record is not None
    assert record.turn_count == 5


class UnreachableGuests:
    """A guest lookup whose database is down."""

    async def get(self, sub: Sub) -> GuestProfile | None:
        raise UpstreamUnavailableError("the booking database is unavailable right now; retry shortly")


async def test_a_turn_that_fails_before_it_begins_frees_the_session_at_once(
    gateway: RunningGateway, store: DynamoChatSessionStore, person: Person
) -> None:
    sign_in = FakeSignIn(person.tokens, person.principal.sub)
    healthy = service(store, ScriptedAgent(), gateway.app.verifier, FakeBooking(), sign_in)
    session_id = session_of(await turn(healthy, "hello"))
    failing = ChatService(
        store,
        ScriptedAgent(),
        ToolRegistry(booking=FakeBooking(), sign_in=sign_in),
        gateway.app.verifier,
        guests=UnreachableGuests(),
    )

    with pytest.raises(UpstreamUnavailableError):
        await turn(failing, "hello", session_id, person.principal)

    record = await store.get(session_id)
    assert record is not None
    assert record.lease_id is None
    assert record.owner_sub is None
    again = await turn(healthy, "thanks", session_id)
    assert again[0].sequence == record.next_sequence

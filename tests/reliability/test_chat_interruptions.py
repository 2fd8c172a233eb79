"""A chat turn interrupted where a drain or a disconnect can cut it: at a yield, and in the middle of its commit.

The agent runs on the real session store (the session's emulator) and the real verifier; the model and the
booking and sign-in ports are the small in-test implementations of tests/services/chat_fakes.py.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import pytest

from gateway.adapters.aws import open_aws_clients
from gateway.adapters.dynamodb.session_store import DynamoChatSessionStore
from gateway.domain import JsonObject, RoundEnd, TextChunk, Usage
from gateway.ports import ChatTurnRecord
from gateway.services.chat import ChatService, ChatTurnRequest, ToolRegistry
from gateway.services.chat.events import ChatEvent, SessionStarted, TextDelta, TurnComplete
from tests.services.chat_fakes import FakeBooking, FakeSignIn, HangingModel, ScriptModel
from tests.support.gateway import RunningGateway
from tests.support.identity import emulator_sign_in


class PausingSessionStore(DynamoChatSessionStore):
    """The real store, except that the first `finish_turn` waits at `gate` after its writes went through: the
    moment a commit's answer is still on its way back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.finish_calls = 0
        self.written = asyncio.Event()
        self.gate = asyncio.Event()

    async def finish_turn(
        self,
        session_id: str,
        *,
        lease_id: str,
        turn: ChatTurnRecord,
        next_sequence: int,
        memory: JsonObject,
        expires_at: float,
        bound: bool | None = None,
    ) -> bool:
        self.finish_calls += 1
        kept = await super().finish_turn(
            session_id,
            lease_id=lease_id,
            turn=turn,
            next_sequence=next_sequence,
            memory=memory,
            expires_at=expires_at,
            bound=bound,
        )
        if self.finish_calls == 1:
            self.written.set()
            await self.gate.wait()
        return kept


@pytest.fixture
async def clients(gateway: RunningGateway) -> AsyncIterator[tuple[str, Any]]:
    endpoints = gateway.devstack.endpoints
    async with open_aws_clients(endpoints.target) as opened:
        yield endpoints.table_name, opened.dynamodb


def turn_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("chat-turn-")]


@contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """What the event loop reports to its exception handler inside the block ("Task exception was never
    retrieved", errors while closing an async generator, ...)."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        yield reported
    finally:
        loop.set_exception_handler(previous)


async def settle() -> None:
    """Let finalizers run, and the tasks they start (an async generator's aclose, ...) run to their end."""
    known = asyncio.all_tasks()
    for _ in range(5):
        gc.collect()
        await asyncio.sleep(0)  # finalizers schedule their tasks with call_soon: let them start
        started = asyncio.all_tasks() - known
        if started:
            await asyncio.wait(started, timeout=5)
        known |= started


async def test_a_stream_closed_at_a_yield_stops_its_turn_before_recording_it_and_reports_no_error(
    gateway: RunningGateway, clients: tuple[str, Any]
) -> None:
    table, dynamodb = clients
    store = DynamoChatSessionStore(dynamodb, table)
    person = await emulator_sign_in(gateway.devstack)
    model = HangingModel()
    chat = ChatService(
        store,
        model,
        ToolRegistry(booking=FakeBooking(), sign_in=FakeSignIn(person, "unused")),
        gateway.app.verifier,
    )
    with loop_errors() as reported:
        events = chat.chat(ChatTurnRequest(session_id="", message="hello", principal=None))
        started = await anext(events)
        assert isinstance(started.body, SessionStarted)
        delta = await anext(events)
        assert isinstance(delta.body, TextDelta)
        # The consumer goes away while the stream waits at a yield (as grpc leaves a cancelled call's stream).
        await events.aclose()
        # The turn's producer has stopped and the model stream is closed by the time the stream is.
        assert turn_tasks() == []
        assert model.closed
        assert chat.load.open == 0
        await settle()
    assert reported == []

    record = await store.get(started.body.session_id)
    assert record is not None
    assert record.lease_id is None
    assert record.next_sequence > delta.sequence
    [recorded] = await store.recent_turns(record.session_id, before=record.turn_count, limit=5, now=0)
    assert recorded.stop_reason == "INTERRUPTED"


async def test_a_turn_cut_off_while_its_commit_is_under_way_is_recorded_once_as_it_ended(
    gateway: RunningGateway, clients: tuple[str, Any]
) -> None:
    table, dynamodb = clients
    store = PausingSessionStore(dynamodb, table)
    person = await emulator_sign_in(gateway.devstack)
    model = ScriptModel([[TextChunk("Hello there."), RoundEnd(False, Usage(3, 1))]])
    chat = ChatService(
        store,
        model,
        ToolRegistry(booking=FakeBooking(), sign_in=FakeSignIn(person, "unused")),
        gateway.app.verifier,
    )
    seen: list[ChatEvent] = []

    async def consume() -> None:
        async with aclosing(chat.chat(ChatTurnRequest(session_id="", message="hello", principal=None))) as events:
            async for event in events:
                seen.append(event)

    with loop_errors() as reported:
        consumer = asyncio.create_task(consume())
        # The turn's commit has gone through, but its answer has not come back: the call is cut off now.
        await asyncio.wait_for(store.written.wait(), 10)
        consumer.cancel()
        store.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await settle()
    assert reported == []

    assert not any(isinstance(e.body, TurnComplete) for e in seen)
    # The commit was not repeated as an interrupted turn over the turn it had recorded.
    assert store.finish_calls == 1
    session_id = seen[0].body.session_id if isinstance(seen[0].body, SessionStarted) else ""
    record = await store.get(session_id)
    assert record is not None
    assert record.lease_id is None
    assert record.turn_count == 1
    [recorded] = await store.recent_turns(session_id, before=record.turn_count, limit=5, now=0)
    assert recorded.stop_reason == "END_TURN"
    assert chat.load.open == 0

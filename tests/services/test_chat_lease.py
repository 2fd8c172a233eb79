"""The session lease: a second turn of a session waits for the first on something real, not a fixed poll.

On one replica it is woken by the turn that frees the session; a lease held by another replica (a second
`ChatService` over the same table) is tried again with a growing, jittered delay. The store is the real one on
the emulator, counting its lease attempts.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any

import pytest

from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb.session_store import DynamoChatSessionStore
from gateway.domain import (
    ConversationEntry,
    JsonObject,
    ModelOutput,
    RoundEnd,
    Sub,
    TextChunk,
    ToolSpec,
    TurnFacts,
    Usage,
)
from gateway.errors import UpstreamUnavailableError
from gateway.ports import ChatSessionRecord, ChatTurnRecord
from gateway.services.chat import ChatLimits, ChatService, ChatTurnRequest, ToolRegistry
from gateway.services.chat.events import ChatEvent, SessionStarted, TurnComplete
from gateway.services.chat.lease import Backoff
from tests.services.chat_fakes import FakeBooking, FakeSignIn
from tests.services.conftest import Person
from tests.support.gateway import RunningGateway

# A backoff so long that a waiter which polled instead of being woken could not finish within WOKEN_WITHIN.
NEVER_POLLS = ChatLimits(lease_retry_first_seconds=60.0, lease_retry_max_seconds=60.0)
# A deadline that only fails the test; the wake-up it waits for comes within milliseconds.
WOKEN_WITHIN = 10.0


class WatchedStore(DynamoChatSessionStore):
    """The real store, counting the lease attempts per session and signalling each refused one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attempts: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.refused = asyncio.Event()

    async def acquire(
        self, session_id: str, *, owner_sub: Sub | None, lease_id: str, lease_until: float, now: float
    ) -> ChatSessionRecord | None:
        self.attempts[session_id] += 1
        held = await super().acquire(
            session_id, owner_sub=owner_sub, lease_id=lease_id, lease_until=lease_until, now=now
        )
        if held is None:
            self.refusals[session_id] += 1
            self.refused.set()
        return held

    async def until_refused(self, session_id: str, times: int) -> None:
        """Return once the session's lease has been refused `times` times in all."""
        async with asyncio.timeout(WOKEN_WITHIN):
            while self.refusals[session_id] < times:
                self.refused.clear()
                await self.refused.wait()


class Replies:
    """A model that answers every message with one line, numbered."""

    def __init__(self) -> None:
        self.rounds = 0

    async def run_round(
        self, conversation: Sequence[ConversationEntry], tools: Sequence[ToolSpec], facts: TurnFacts, memory: JsonObject
    ) -> AsyncGenerator[ModelOutput, None]:
        self.rounds += 1
        yield TextChunk(f"reply {self.rounds}")
        yield RoundEnd(False, Usage())


@pytest.fixture
def store(aws: AwsClients, table: str) -> WatchedStore:
    return WatchedStore(aws.dynamodb, table)


def replica(store: WatchedStore, gateway: RunningGateway, person: Person, limits: ChatLimits) -> ChatService:
    tools = ToolRegistry(booking=FakeBooking(), sign_in=FakeSignIn(person.tokens, person.principal.sub))
    return ChatService(store, Replies(), tools, gateway.app.verifier, limits=limits)


async def first_turn(chat: ChatService) -> tuple[AsyncGenerator[ChatEvent, None], str]:
    """A new session's first turn, under way: its events after SessionStarted, and the session's id."""
    first = chat.chat(ChatTurnRequest(session_id="", message="first", principal=None))
    started = await anext(first)
    assert isinstance(started.body, SessionStarted)
    return first, started.body.session_id


async def turn(chat: ChatService, message: str, session_id: str) -> list[ChatEvent]:
    request = ChatTurnRequest(session_id=session_id, message=message, principal=None)
    async with aclosing(chat.chat(request)) as events:
        return [event async for event in events]


async def test_the_backoff_doubles_from_its_first_delay_to_its_cap_each_step_jittered() -> None:
    delays = Backoff(first_seconds=0.020, max_seconds=1.0).delays(random.Random(15))
    steps = [0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0, 1.0]
    drawn = [next(delays) for _ in steps]
    for delay, step in zip(drawn, steps, strict=True):
        assert step / 2 <= delay <= step
    assert len(set(drawn)) == len(drawn)


async def test_a_second_turn_on_this_replica_is_woken_as_soon_as_the_first_frees_the_session(
    store: WatchedStore, gateway: RunningGateway, person: Person
) -> None:
    chat = replica(store, gateway, person, NEVER_POLLS)
    first, session_id = await first_turn(chat)

    # The first turn holds the lease (it is under way, at its first event): the second turn is refused once,
    # then waits.
    second = asyncio.create_task(turn(chat, "second", session_id))
    await store.until_refused(session_id, 1)
    assert chat.leases.waiting(session_id) == 1

    rest = [event async for event in first]
    assert isinstance(rest[-1].body, TurnComplete)
    # Waiting for a poll would take 30 s or more: only the first turn's wake-up ends the wait this soon.
    following = await asyncio.wait_for(second, WOKEN_WITHIN)

    assert store.attempts[session_id] == 2
    assert store.refusals[session_id] == 1
    assert following[0].sequence == rest[-1].sequence + 1
    assert isinstance(following[-1].body, TurnComplete)
    assert chat.leases.waiting(session_id) == 0


async def test_turns_waiting_on_this_replica_take_the_session_one_after_another(
    store: WatchedStore, gateway: RunningGateway, person: Person
) -> None:
    chat = replica(store, gateway, person, NEVER_POLLS)
    first, session_id = await first_turn(chat)

    waiting = [asyncio.create_task(turn(chat, f"next {n}", session_id)) for n in range(3)]
    await store.until_refused(session_id, 3)
    assert chat.leases.waiting(session_id) == 3
    rest = [event async for event in first]

    # Each turn that frees the session wakes those still waiting; none of them waits for a poll.
    turns = await asyncio.wait_for(asyncio.gather(*waiting), WOKEN_WITHIN)

    sequences = sorted(e.sequence for events in turns for e in events)
    assert sequences == list(range(rest[-1].sequence + 1, rest[-1].sequence + 1 + len(sequences)))
    record = await store.get(session_id)
    assert record is not None
    assert (record.turn_count, record.lease_id) == (4, None)


class LateRefusalStore(WatchedStore):
    """The real store, except that the answer to the first refused attempt reaches the turn only after `gate` is
    set: the store decided while the session was held, and the holder freed it before the turn read the answer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()

    async def acquire(
        self, session_id: str, *, owner_sub: Sub | None, lease_id: str, lease_until: float, now: float
    ) -> ChatSessionRecord | None:
        held = await super().acquire(
            session_id, owner_sub=owner_sub, lease_id=lease_id, lease_until=lease_until, now=now
        )
        if held is None and self.refusals[session_id] == 1:
            await self.gate.wait()
        return held


async def test_a_refusal_read_after_the_holder_freed_the_session_does_not_miss_its_wake_up(
    aws: AwsClients, table: str, gateway: RunningGateway, person: Person
) -> None:
    # Seen in CI: several turns woken at once, one takes the session, runs and frees it while another's refused
    # attempt is still on its way back; that one then found no holder here to wake it and polled.
    store = LateRefusalStore(aws.dynamodb, table)
    chat = replica(store, gateway, person, NEVER_POLLS)
    first, session_id = await first_turn(chat)

    second = asyncio.create_task(turn(chat, "second", session_id))
    await store.until_refused(session_id, 1)
    rest = [event async for event in first]
    assert isinstance(rest[-1].body, TurnComplete)
    store.gate.set()

    following = await asyncio.wait_for(second, WOKEN_WITHIN)
    assert (store.attempts[session_id], store.refusals[session_id]) == (2, 1)
    assert following[0].sequence == rest[-1].sequence + 1
    assert chat.leases.waiting(session_id) == 0


async def test_a_lease_held_by_another_replica_is_tried_again_with_backoff_and_taken_once_freed(
    store: WatchedStore, gateway: RunningGateway, person: Person
) -> None:
    here = replica(store, gateway, person, ChatLimits())
    elsewhere = replica(store, gateway, person, ChatLimits())
    first, session_id = await first_turn(elsewhere)

    second = asyncio.create_task(turn(here, "second", session_id))
    # Nothing on this replica holds the session, so nothing here can wake the second turn: it tries again.
    await store.until_refused(session_id, 3)
    assert here.leases.waiting(session_id) == 1
    assert not second.done()

    rest = [event async for event in first]
    following = await asyncio.wait_for(second, WOKEN_WITHIN)

    assert following[0].sequence == rest[-1].sequence + 1
    assert isinstance(following[-1].body, TurnComplete)
    assert store.attempts[session_id] == store.refusals[session_id] + 1
    record = await store.get(session_id)
    assert record is not None
    assert (record.turn_count, record.lease_id) == (2, None)


async def test_a_turn_cancelled_while_it_waits_for_the_lease_leaves_nothing_behind(
    store: WatchedStore, gateway: RunningGateway, person: Person
) -> None:
    chat = replica(store, gateway, person, NEVER_POLLS)
    first, session_id = await first_turn(chat)
    second = asyncio.create_task(turn(chat, "second", session_id))
    await store.until_refused(session_id, 1)

    # The call's deadline passed, or its client went away.
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second

    assert chat.leases.waiting(session_id) == 0
    rest = [event async for event in first]
    assert isinstance(rest[-1].body, TurnComplete)
    record = await store.get(session_id)
    assert record is not None
    assert (record.turn_count, record.lease_id) == (1, None)


class StuckCommitStore(WatchedStore):
    """The real store, except that the first turn's commit hangs in the store until `gate` is set, then fails
    without writing anything (a store call that never answers in time)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stuck_lease: str | None = None
        self.stuck = asyncio.Event()
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
        if self.stuck_lease in (None, lease_id):
            self.stuck_lease = lease_id
            self.stuck.set()
            await self.gate.wait()
            raise UpstreamUnavailableError("the session store did not answer")
        return await super().finish_turn(
            session_id,
            lease_id=lease_id,
            turn=turn,
            next_sequence=next_sequence,
            memory=memory,
            expires_at=expires_at,
            bound=bound,
        )


async def test_a_turn_of_this_replica_stuck_in_its_commit_holds_the_next_turn_only_until_its_lease_runs_out(
    aws: AwsClients, table: str, gateway: RunningGateway, person: Person
) -> None:
    store = StuckCommitStore(aws.dynamodb, table)
    # A short lease (the turn's bound plus the margin), backoff that could never end the wait within the test. Two
    # seconds: the first turn's own table calls, before it gets stuck, must not outlast it on a loaded machine.
    limits = replace(NEVER_POLLS, turn_timeout_seconds=1.0, lease_margin_seconds=1.0)
    chat = replica(store, gateway, person, limits)
    first, session_id = await first_turn(chat)

    async def drain() -> list[ChatEvent]:
        return [event async for event in first]

    rest = asyncio.create_task(drain())
    await asyncio.wait_for(store.stuck.wait(), WOKEN_WITHIN)

    # Nobody wakes the second turn: it takes the session once the first turn's lease has run out.
    following = await asyncio.wait_for(turn(chat, "second", session_id), WOKEN_WITHIN)

    assert isinstance(following[-1].body, TurnComplete)
    assert store.refusals[session_id] == 1
    store.gate.set()
    with pytest.raises(UpstreamUnavailableError):
        await asyncio.wait_for(rest, WOKEN_WITHIN)
    await first.aclose()

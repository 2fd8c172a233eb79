"""Durable chat turns: keep_running turns that outlive their stream, ResumeChat and CancelTurn.

A keep_running turn runs in a task owned by the gateway (`DurableTurns`), not by the call: the call only follows
it. Its events go three ways (`LiveTurn`):
- into memory, where the caller's stream and any ResumeChat on this replica follow it (no table read);
- into the table in batches (`ChatEventJournal.append`): at most one write per flush interval, plus one when
  the turn ends, written before the turn is recorded and its lease freed, so a follower on another replica that
  sees the lease gone has seen the TurnComplete;
- a TokenDelivery only sealed with a key derived from the turn's resume token (`seal.py`), kept 10 minutes.
A follower on another replica reads the table with one Query per poll, backing off from 200 ms to 1 s while
nothing new comes (at most 5 reads a second). A turn whose lease ran out without a TurnComplete (its replica
died) ends for its followers with `TurnComplete(INTERRUPTED)`, which the next turn of the session keeps
(`journal.recover_interrupted`).

CancelTurn stops a turn of this replica at once (`Turn.stop`), and a turn of another replica through the table:
each running kept turn reads its session's `cancel_lease` every `cancel_poll_seconds`. On a drain, turns still
running when the open calls have finished (or the grace period ended) stop with `INTERRUPTED`, recorded and kept.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace

from gateway.domain import Principal, Usage
from gateway.errors import (
    GatewayError,
    InvalidArgumentError,
    ResumeEventsExpiredError,
    ResumeSequenceAheadError,
    ResumeTokenInvalidError,
    SessionNotFoundError,
    SessionNotOwnedError,
    TokenMissingError,
)
from gateway.ports import ChatEventJournal, JournalPage, KeptEvent, KeptSession, SealedDelivery
from gateway.redact import fingerprint
from gateway.services.chat.events import (
    ChatEvent,
    ChatEventBody,
    SessionStarted,
    StopReason,
    TokenDeliveryEvent,
    TokenDeliveryExpired,
    TurnComplete,
)
from gateway.services.chat.journal import DELIVERY_KIND, decode_body, encode_body, interrupted_after_loss
from gateway.services.chat.lease import RECORD_AFTER_CANCEL_SECONDS
from gateway.services.chat.seal import new_resume_token, resume_verifier, seal, unseal, verifies
from gateway.services.chat.turn import ChatTurnRequest, Turn

log = logging.getLogger(__name__)

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
# Above any sequence a session reaches: a read that wants the session item and no events.
_NO_EVENTS = 10**12 - 2


@dataclass(frozen=True)
class KeepLimits:
    """Timings of keep_running turns and their followers."""

    # At most one table write of kept events per interval per turn (plus one at the end).
    flush_interval_seconds: float = 0.25
    # How often a running kept turn reads whether CancelTurn was asked on another replica.
    cancel_poll_seconds: float = 0.5
    # A follower on another replica reads the table after this delay, doubling to the maximum while idle.
    follow_poll_first_seconds: float = 0.2
    follow_poll_max_seconds: float = 1.0
    # A follower (the caller too) is never sent an event more than this many past the last one written to the
    # table: if the replica dies, the TurnComplete(INTERRUPTED) kept for the turn is numbered after them.
    max_unflushed_events: int = 64
    # How long a sealed TokenDelivery is kept for replay.
    sealed_delivery_seconds: float = 600.0
    # The time to live of kept events (as the session's).
    session_ttl_seconds: float = 24 * 3600.0


@dataclass(frozen=True)
class ResumeRequest:
    """A ResumeChat call: the session, the last sequence the client has, its resume token and principal."""

    session_id: str
    after_sequence: int
    resume_token: str
    principal: Principal | None


@dataclass(frozen=True)
class CancelRequest:
    """A CancelTurn call."""

    session_id: str
    resume_token: str
    principal: Principal | None


TurnSource = Callable[[ChatTurnRequest, "LiveTurn"], AsyncGenerator[ChatEvent, None]]


def _check_session_id(session_id: str) -> None:
    if not _SESSION_ID.fullmatch(session_id):
        raise InvalidArgumentError.for_field("session_id", "is not a chat session id")


def _signal(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()


class LiveTurn:
    """A keep_running turn of this replica: its events in memory, its batches to the table, its cancel watch.

    Also the chat service's `keeping` hook: `begin` (the lease is held), `ending` (the last event, flushed before
    the turn is recorded), `interrupted` (the turn failed before its TurnComplete).
    """

    def __init__(self, owner: DurableTurns, token: str) -> None:
        self._owner = owner
        self._journal = owner.journal
        self._limits = owner.limits
        self._clock = owner.clock
        self.token = token
        self.turn: Turn | None = None
        self.session_id = ""
        self.verifier = ""
        self.first_sequence = 0
        self.flushed = 0
        self.events: list[ChatEvent] = []
        self.ended = False
        # The TurnComplete given to `ending`, kept before the turn is recorded, told to followers after it.
        self._ending: ChatEvent | None = None
        self._kept = 0
        self.done = False
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters: list[asyncio.Future[None]] = []
        self._pending: list[KeptEvent] = []
        self._sealed: list[SealedDelivery] = []
        self._wake: asyncio.Future[None] | None = None
        self._closing = False
        self._flusher: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.writes = 0

    # The chat service's hooks -------------------------------------------------------------------------------

    async def begin(self, turn: Turn) -> None:
        """The turn holds its session: say in the table that its events are kept, and start following it."""
        self.turn = turn
        self.session_id = turn.session_id
        self.first_sequence = turn.next_sequence
        self.flushed = turn.next_sequence - 1
        self.verifier = resume_verifier(self.token, turn.session_id)
        await self._journal.mark_kept(
            turn.session_id, lease_id=turn.lease_id, kept_from=turn.next_sequence, resume_verifier=self.verifier
        )
        self._owner.register(self)
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"chat-keep-{fingerprint(turn.session_id)}")
        self._watcher = asyncio.create_task(self._watch_cancel(), name=f"chat-cancel-{fingerprint(turn.session_id)}")
        if not self.started.done():
            self.started.set_result(None)

    async def ending(self, event: ChatEvent) -> None:
        """The turn's TurnComplete: kept, and every event flushed, before the turn is recorded (bounded).

        Its followers (the caller too) hear it only once the turn is recorded and its session freed (the chat
        service yields it then, `add`), or when the turn's task ends (`finish`): a client told that the turn is
        over finds the session free for its next message, as without keep_running.
        """
        self._keep(event)
        self._ending = event
        self.ended = True
        self._closing = True
        self._poke()
        if self._watcher is not None:
            self._watcher.cancel()
        if self._flusher is not None:
            try:
                async with asyncio.timeout(RECORD_AFTER_CANCEL_SECONDS):
                    await asyncio.shield(self._flusher)
            except (Exception, asyncio.CancelledError):
                # The turn is still recorded; a follower on another replica ends when the lease is freed.
                log.warning("kept chat events not flushed", extra={"session": fingerprint(self.session_id)})

    async def interrupted(self, turn: Turn) -> None:
        """The turn failed before its TurnComplete: end it as INTERRUPTED for its followers."""
        if not self.ended and self.turn is not None:
            await self.ending(turn.stamp(TurnComplete(StopReason.INTERRUPTED, turn.usage)))

    # Events ---------------------------------------------------------------------------------------------------

    def add(self, event: ChatEvent) -> None:
        """One more event of the turn (ignored if already added): to the next batch (unless kept already), to
        memory and to followers."""
        if self.events and event.sequence <= self.events[-1].sequence:
            return
        if event.sequence > self._kept:
            self._keep(event)
        self.events.append(event)
        _signal(self._waiters)

    def _keep(self, event: ChatEvent) -> None:
        """The event into the next batch for the table (a TokenDelivery sealed)."""
        self._kept = event.sequence
        until = 0.0
        if isinstance(event.body, TokenDeliveryEvent):
            until = self._clock() + self._limits.sealed_delivery_seconds
            self._sealed.append(
                SealedDelivery(
                    event.sequence, seal(self.token, self.session_id, event.sequence, event.body.delivery), until
                )
            )
        self._pending.append(KeptEvent(event.sequence, encode_body(event.body, until)))
        self._poke()

    def finish(self) -> None:
        """The turn's task is over: followers in memory hear its end and stop, the replica forgets the turn."""
        if self._ending is not None:
            # Not recorded (its record failed or was cut short): the kept TurnComplete still ends the followers.
            self.add(self._ending)
        self.done = True
        self._closing = True
        self._poke()
        # The flusher writes what is left and ends by itself.
        if self._watcher is not None:
            self._watcher.cancel()
        _signal(self._waiters)
        self._owner.unregister(self)

    async def changed(self) -> None:
        """Until the next event (or the end)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def for_follower(self, event: ChatEvent, token: str) -> ChatEvent:
        """The event as a follower with `token` may see it: tokens only for the holder of the turn's token."""
        body = event.body
        if isinstance(body, TokenDeliveryEvent) and not verifies(token, self.session_id, self.verifier):
            return ChatEvent(event.sequence, TokenDeliveryExpired(body.delivery.guest_id))
        return event

    # Background work -----------------------------------------------------------------------------------------

    def _poke(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _pause(self, seconds: float | None) -> None:
        """Until poked, or for `seconds` (None: no time limit)."""
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        timer = loop.call_later(seconds, _fire, wake) if seconds is not None else None
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _flush_loop(self) -> None:
        """Write what has arrived, then rest a flush interval; the last write once the turn is closing."""
        interval = self._limits.flush_interval_seconds
        while True:
            if not self._pending and not self._closing:
                await self._pause(None)
            await self._write()
            if self._closing and not self._pending:
                return
            if not self._closing:
                await self._pause_interval(interval)

    async def _pause_interval(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._closing and loop.time() < deadline:
            await self._pause(deadline - loop.time())

    async def _write(self) -> None:
        events, self._pending = self._pending, []
        sealed, self._sealed = self._sealed, []
        if not events and not sealed:
            return
        turn = self.turn
        bound = turn is not None and turn.principal is not None
        try:
            await self._journal.append(
                self.session_id,
                events,
                sealed,
                expires_at=self._clock() + self._limits.session_ttl_seconds,
                bound=bound,
            )
            self.writes += 1
            self.flushed = events[-1].sequence if events else self.flushed
            _signal(self._waiters)
        except GatewayError:
            log.warning("kept chat events not written; retrying", extra={"session": fingerprint(self.session_id)})
            self._pending[:0] = events
            self._sealed[:0] = sealed
            if self._closing:
                raise

    async def _watch_cancel(self) -> None:
        turn = self.turn
        assert turn is not None
        while not self._closing:
            await asyncio.sleep(self._limits.cancel_poll_seconds)
            try:
                if await self._journal.cancel_requested(self.session_id, lease_id=turn.lease_id):
                    turn.stop(StopReason.CANCELLED)
                    return
            except GatewayError:
                log.warning("cancel state unknown", extra={"session": fingerprint(self.session_id)})


def _fire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class DurableTurns:
    """The keep_running turns of this replica, ResumeChat and CancelTurn over the journal."""

    def __init__(
        self,
        journal: ChatEventJournal,
        run: TurnSource,
        *,
        limits: KeepLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self._run = run
        self.limits = limits or KeepLimits()
        self.clock = clock
        self._live: dict[str, LiveTurn] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, live: LiveTurn) -> None:
        self._live[live.session_id] = live

    def unregister(self, live: LiveTurn) -> None:
        if self._live.get(live.session_id) is live:
            del self._live[live.session_id]

    @property
    def running(self) -> int:
        """How many keep_running turns run on this replica."""
        return len(self._tasks)

    # Chat with keep_running ---------------------------------------------------------------------------------

    async def chat(self, request: ChatTurnRequest) -> AsyncGenerator[ChatEvent, None]:
        """Start a keep_running turn and follow it; errors before its first event are the call's status.

        The caller's SessionStarted carries the resume token. The call going away does not stop the turn.
        """
        live = LiveTurn(self, new_resume_token())
        # The turn is bound by its own time limit, not the call's deadline: it outlives the call.
        task = asyncio.create_task(self._pump(replace(request, deadline=None), live), name="chat-kept-turn")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.shield(live.started)
        except asyncio.CancelledError:
            if not live.started.done():
                # The call went away while the turn waited for its session: it never began.
                task.cancel()
            raise
        async with aclosing(self._follow_live(live, live.first_sequence - 1, live.token, caller=True)) as events:
            async for event in events:
                yield event

    async def _pump(self, request: ChatTurnRequest, live: LiveTurn) -> None:
        try:
            async with aclosing(self._run(request, live)) as events:
                async for event in events:
                    live.add(event)
        except BaseException as exc:
            if not live.started.done():
                if isinstance(exc, asyncio.CancelledError):
                    live.started.cancel()
                else:
                    live.started.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning(
                    "kept chat turn failed",
                    extra={"session": fingerprint(live.session_id), "error": type(exc).__name__},
                )
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
        finally:
            live.finish()

    async def _follow_live(
        self, live: LiveTurn, after: int, token: str, *, caller: bool = False
    ) -> AsyncGenerator[ChatEvent, None]:
        """The live turn's events above `after`, from memory, until its TurnComplete."""
        index = 0
        window = self.limits.max_unflushed_events
        while True:
            while index < len(live.events):
                event = live.events[index]
                if event.sequence > live.flushed + window and not live.done:
                    break
                index += 1
                if event.sequence <= after:
                    continue
                if caller and isinstance(event.body, SessionStarted):
                    event = ChatEvent(event.sequence, replace(event.body, resume_token=live.token))
                yield live.for_follower(event, token)
                if isinstance(event.body, TurnComplete):
                    return
            if live.done:
                return
            await live.changed()

    # Draining --------------------------------------------------------------------------------------------------

    def interrupt_all(self) -> None:
        """Stop every kept turn of this replica with INTERRUPTED (the drain's grace is over)."""
        for live in list(self._live.values()):
            if live.turn is not None:
                live.turn.stop(StopReason.INTERRUPTED)

    async def idle(self) -> None:
        """Until every kept turn of this replica has ended and recorded itself."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ResumeChat ------------------------------------------------------------------------------------------------

    async def resume(self, request: ResumeRequest) -> AsyncGenerator[ChatEvent, None]:
        """Every kept event above `after_sequence`, then the running kept turn live until its TurnComplete."""
        _check_session_id(request.session_id)
        after = request.after_sequence
        if after < 0:
            raise InvalidArgumentError.for_field("after_sequence", "must not be negative")
        page = await self.journal.read(request.session_id, after=after)
        session = page.session
        if session is None:
            raise SessionNotFoundError("no such chat session (it may have expired); start a new one")
        self._authorize(request.session_id, session, request.principal, request.resume_token)
        live = self._live.get(request.session_id)
        kept_running = session.kept_lease is not None and session.lease_id == session.kept_lease
        newest = session.next_sequence - 1
        if page.events:
            newest = max(newest, page.events[-1].sequence)
        if live is not None and live.events:
            newest = max(newest, live.events[-1].sequence)
        if after > newest and not kept_running and live is None:
            raise ResumeSequenceAheadError.for_field(
                "after_sequence", f"is above the newest event of this chat ({newest})"
            )
        first: int | None = page.events[0].sequence if page.events else None
        if page.events and int(page.events[0].body.get("gap", first or 0)) <= after + 1:
            # The TurnComplete of a turn whose replica died, after the events it may have sent but not kept.
            first = after + 1
        if first is None and live is not None:
            first = live.first_sequence
        if first is None and kept_running:
            first = session.kept_from
        if (first is None and after < newest) or (first is not None and first > after + 1 and after < newest):
            raise ResumeEventsExpiredError(
                f"the events after {after} are no longer kept; the oldest kept is {first or 0}",
                metadata={"oldest_sequence": str(first or 0)},
            )
        token = request.resume_token
        if live is not None:
            cursor = after
            for kept in page.events:
                if kept.sequence >= live.first_sequence:
                    break
                body = self._body(request.session_id, kept, page, token)
                if body is None:
                    break
                yield ChatEvent(kept.sequence, body)
                cursor = kept.sequence
            async with aclosing(self._follow_live(live, max(cursor, after), token)) as events:
                async for event in events:
                    yield event
            return
        async with aclosing(self._follow_table(request.session_id, after, page, token)) as events:
            async for event in events:
                yield event

    def _body(self, session_id: str, kept: KeptEvent, page: JournalPage, token: str) -> ChatEventBody | None:
        """The kept event as sent to a follower with `token`; None: its sealed delivery is not visible yet."""
        body = decode_body(kept.body)
        if kept.body.get("k") != DELIVERY_KIND or not isinstance(body, TokenDeliveryExpired):
            return body
        until = float(kept.body.get("until", 0.0))
        if until <= self.clock():
            return body
        sealed = page.sealed.get(kept.sequence)
        if sealed is None:
            return None
        delivery = unseal(token, session_id, kept.sequence, sealed.sealed)
        return TokenDeliveryEvent(delivery) if delivery is not None else body

    async def _follow_table(
        self, session_id: str, after: int, page: JournalPage, token: str
    ) -> AsyncGenerator[ChatEvent, None]:
        """Replay from the table, then poll it (backing off) while a kept turn holds the session."""
        session = page.session
        assert session is not None
        followed = session.kept_lease if session.kept_lease == session.lease_id else None
        kept_from = session.kept_from
        cursor = after
        delay = self.limits.follow_poll_first_seconds
        lease_gone_once = False
        while True:
            progressed = False
            for kept in page.events:
                if kept.sequence <= cursor:
                    continue
                body = self._body(session_id, kept, page, token)
                if body is None:
                    if followed is not None:
                        break
                    body = decode_body(kept.body)  # nothing more is coming: the delivery is gone
                yield ChatEvent(kept.sequence, body)
                cursor = kept.sequence
                progressed = True
                if isinstance(body, TurnComplete) and (followed is None or kept.sequence >= kept_from):
                    return
            if followed is None or page.session is None:
                return
            current = page.session
            if current.lease_id != followed or current.lease_until < self.clock():
                # The lease is gone without a TurnComplete seen: read once more (the last batch is written
                # before the lease is freed), then the turn is over for its followers.
                if lease_gone_once:
                    last = max(await self.journal.last_sequence(session_id), current.next_sequence - 1)
                    lost = interrupted_after_loss(last + 1, self.limits.max_unflushed_events)
                    yield ChatEvent(max(lost.sequence, cursor + 1), TurnComplete(StopReason.INTERRUPTED, Usage()))
                    return
                lease_gone_once = True
            elif progressed:
                delay = self.limits.follow_poll_first_seconds
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.limits.follow_poll_max_seconds)
            page = await self.journal.read(session_id, after=cursor)

    # CancelTurn -------------------------------------------------------------------------------------------------

    async def cancel(self, request: CancelRequest) -> bool:
        """Stop the session's running kept turn, here or on another replica; False when none runs."""
        _check_session_id(request.session_id)
        page = await self.journal.read(request.session_id, after=_NO_EVENTS)
        if page.session is None:
            raise SessionNotFoundError("no such chat session (it may have expired); start a new one")
        self._authorize(request.session_id, page.session, request.principal, request.resume_token)
        live = self._live.get(request.session_id)
        if live is not None and live.turn is not None:
            return not live.ended and live.turn.stop(StopReason.CANCELLED)
        return await self.journal.request_cancel(request.session_id, now=self.clock())

    def _authorize(self, session_id: str, session: KeptSession, principal: Principal | None, token: str) -> None:
        """The turn's resume token opens the session; without one, a bound session needs its owner's bearer."""
        if token:
            if verifies(token, session_id, session.resume_verifier):
                return
            raise ResumeTokenInvalidError("the resume token is not the one of this chat's last kept turn")
        if session.owner_sub is None:
            raise ResumeTokenInvalidError("send the resume token of the turn (SessionStarted.resume_token)")
        if principal is None:
            raise TokenMissingError(
                'this chat belongs to a signed-in person: send "authorization: Bearer <access token>"'
            )
        if principal.sub != session.owner_sub:
            raise SessionNotOwnedError("this chat belongs to somebody else")

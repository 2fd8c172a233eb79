"""The chat service: one turn of the booking agent, from the person's message to TurnComplete.

`ChatService` is a small facade over the turn's jobs, each in its own module:
- `lease.py` takes the session's lease (turns of one session never overlap, on any replica) and wakes a turn
  waiting for it when the turn holding it frees the session;
- `runner.py` alternates model rounds and tool calls until the model stops asking for tools, bounded in rounds
  and in time, and streams the events as they happen (text merged by `coalescer.py`, via `outbox.py`);
- `sign_in.py` completes a sign-in inside the chat for the `verify_code` tool (bind, deliver the tokens);
- `approval.py` holds bookings and cancellations for the person's decision, takes the decision (before the
  turn's first event: a refused one is the call's status) and answers the held call at the next turn's start;
- `recorder.py` records the turn once and frees the session, or records an interrupted turn in bounded time;
- `quota.py` admits the turn (turns and new sessions per client, model-token budgets) before anything is
  written, and charges the tokens the turn used once it is over.
Every event carries the session's next sequence number.

Cancellation (the client went away) closes the runner's stream, which cancels the turn's producer: the model's
stream is closed and a running tool is cancelled before the runner's task group exits, so nothing of the turn
outlives the call. What happened so far is recorded and the lease released. A booking is one transaction in the
reservation service, so a cancelled turn leaves either a whole booking or none.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import replace

from gateway.domain import Calendar, ConversationEntry, Principal, UserText
from gateway.errors import InvalidArgumentError
from gateway.ports import (
    AgentModel,
    ApprovalStore,
    BearerVerifier,
    ChatEventJournal,
    ChatSessionRecord,
    ChatSessionStore,
    GuestLookup,
)
from gateway.redact import fingerprint
from gateway.services.chat.approval import ApprovalGate
from gateway.services.chat.backends import BookingTools
from gateway.services.chat.coalescer import FlushPolicy, StreamLoad
from gateway.services.chat.durable import DurableTurns, KeepLimits, LiveTurn
from gateway.services.chat.events import ChatEvent, SessionStarted, TurnComplete
from gateway.services.chat.journal import recover_interrupted
from gateway.services.chat.lease import RECORD_AFTER_CANCEL_SECONDS, SessionLeases
from gateway.services.chat.quota import Admission, ChatAdmission, ChatQuota
from gateway.services.chat.recorder import INTERRUPTED, TurnRecorder
from gateway.services.chat.runner import TurnRunner
from gateway.services.chat.sign_in import ChatSignIn
from gateway.services.chat.tools import ToolRegistry
from gateway.services.chat.turn import ChatLimits, ChatTurnRequest, Turn

__all__ = ["RECORD_AFTER_CANCEL_SECONDS", "ChatAdmission", "ChatLimits", "ChatQuota", "ChatService", "ChatTurnRequest"]

log = logging.getLogger(__name__)

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


class ChatService:
    """Runs turns of the booking agent over stored chat sessions.

    `load` counts this process's open chat streams; `leases` holds the sessions its turns hold and wait for.
    `admission` bounds turns, new sessions and model tokens per client (None: unbounded, for tests of other
    things). `approvals` keeps bookings and cancellations held for the person's decision; without it they are
    refused (never run unapproved); `booking` is what the gateway reads to write an approval's summary.
    """

    def __init__(
        self,
        store: ChatSessionStore,
        model: AgentModel,
        tools: ToolRegistry,
        verifier: BearerVerifier,
        *,
        guests: GuestLookup | None = None,
        limits: ChatLimits | None = None,
        admission: ChatAdmission | None = None,
        flush: FlushPolicy | None = None,
        load: StreamLoad | None = None,
        approvals: ApprovalStore | None = None,
        booking: BookingTools | None = None,
        clock: Callable[[], float] = time.time,
        journal: ChatEventJournal | None = None,
        keep: KeepLimits | None = None,
        calendar: Calendar | None = None,
    ) -> None:
        self._store = store
        self._guests = guests
        self._limits = limits = limits or ChatLimits()
        self._clock = clock
        self._admission = admission
        self.load = load = load or StreamLoad()
        self.leases = SessionLeases(store, limits=limits, clock=clock)
        self._approvals = ApprovalGate(
            store,
            approvals,
            booking,
            tools,
            ttl_seconds=limits.approval_ttl_seconds,
            session_ttl_seconds=limits.session_ttl_seconds,
            clock=clock,
        )
        self._runner = TurnRunner(
            model,
            tools,
            ChatSignIn(store, verifier),
            self._approvals,
            limits=limits,
            flush=flush or FlushPolicy(),
            load=load,
            clock=clock,
            calendar=calendar,
        )
        self._recorder = TurnRecorder(store, self.leases, limits=limits, clock=clock)
        # keep_running turns, ResumeChat and CancelTurn (durable.py); None: not offered.
        self._journal = journal
        self.kept = (
            DurableTurns(
                journal,
                self.chat,
                limits=keep or KeepLimits(session_ttl_seconds=limits.session_ttl_seconds),
                clock=clock,
            )
            if journal is not None
            else None
        )

    async def chat(self, request: ChatTurnRequest, keeping: LiveTurn | None = None) -> AsyncGenerator[ChatEvent, None]:
        """Run one turn; yield its events. Errors before the first event are the call's status.

        A turn over its client's limits is refused (`RateLimitedError`, `TokenBudgetExhaustedError`) before its
        session is created or taken: nothing is written and the model is never called. `keeping` is the hook
        of a keep_running turn (durable.py): told when the turn holds its session, and given the TurnComplete
        to keep before the turn is recorded.
        """
        self._check_request(request)
        admission: Admission | None = None
        if self._admission is not None:
            admission = await self._admission.admit(request)
        turn = await self._start(request)
        if keeping is not None:
            try:
                await keeping.begin(turn)
            except BaseException:
                await self.leases.release(turn.session_id, turn.lease_id)
                raise
        started = time.perf_counter()
        stop = INTERRUPTED
        with self.load.track():
            try:
                yield turn.stamp(
                    SessionStarted(turn.session_id, turn.resumed, turn.principal is not None, turn.guest_id)
                )
                # Closed here, not when garbage-collected: the producer has stopped before the turn is recorded.
                async with aclosing(self._runner.run(turn)) as bodies:
                    async for body in bodies:
                        event = turn.stamp(body)
                        if isinstance(body, TurnComplete):
                            if keeping is not None:
                                # Kept before the lease is freed: a follower that sees it free has seen this.
                                await keeping.ending(event)
                            # Record the turn (and free the session) before the client hears it is over, so
                            # that its next message never waits for this turn's lease.
                            await self._recorder.commit(turn, body.stop_reason.value, turn.next_sequence)
                            stop = body.stop_reason.value
                        yield event
            finally:
                if not turn.committed:
                    if keeping is not None:
                        await keeping.interrupted(turn)
                    await self._recorder.record_interrupted(turn)
                if admission is not None and self._admission is not None:
                    await self._admission.charge(admission, turn.usage)
                log.info(
                    "chat turn",
                    extra={
                        "session": fingerprint(turn.session_id),
                        "turn": turn.number,
                        "stop_reason": stop,
                        "rounds": turn.rounds,
                        "input_tokens": turn.usage.input_tokens,
                        "output_tokens": turn.usage.output_tokens,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )

    def _check_request(self, request: ChatTurnRequest) -> None:
        if request.decision is not None:
            if request.message:
                raise InvalidArgumentError.for_field("message", "send either a message or a decision, not both")
            if not 1 <= len(request.decision.approval_id) <= 64:
                raise InvalidArgumentError.for_field("decision.approval_id", "must name the ApprovalRequested")
            if not request.session_id:
                raise InvalidArgumentError.for_field("session_id", "a decision belongs to the session that asked")
        elif not request.message.strip():
            raise InvalidArgumentError.for_field("message", "must not be empty (or send a decision)")
        if len(request.message) > self._limits.max_message_chars:
            raise InvalidArgumentError.for_field(
                "message", f"must be at most {self._limits.max_message_chars} characters"
            )
        if request.session_id and not _SESSION_ID.fullmatch(request.session_id):
            raise InvalidArgumentError.for_field(
                "session_id", "is not a chat session id; send an empty session_id to start a new session"
            )

    def _budget(self, request: ChatTurnRequest) -> float:
        """The turn's time from now: its own bound, or less, ending the margin before the call's deadline."""
        budget = self._limits.turn_timeout_seconds
        if request.deadline is not None:
            left = request.deadline - time.monotonic() - self._limits.deadline_margin_seconds
            budget = min(budget, max(left, 0.0))
        return budget

    async def _start(self, request: ChatTurnRequest) -> Turn:
        # A decision is taken before the turn waits for the session: concurrent ones are refused at once.
        decided = await self._approvals.decide(request) if request.decision is not None else None
        lease = await self.leases.take(request, self._budget(request) + self._limits.lease_margin_seconds)
        record = lease.session
        next_sequence = record.next_sequence
        try:
            if record.kept_lease is not None and record.kept_lease != lease.lease_id and self._journal is not None:
                # A keep_running turn held the session and never ended (its replica died).
                next_sequence = await recover_interrupted(
                    self._journal,
                    record,
                    window=self.kept.limits.max_unflushed_events if self.kept is not None else 0,
                    session_ttl_seconds=self._limits.session_ttl_seconds,
                    clock=self._clock,
                )
            principal, history = await self._prepare(record, request.principal)
            opening = await self._approvals.begin(request, history, decided)
        except BaseException:
            # The turn never began: free the session at once rather than when the lease runs out.
            await self.leases.release(record.session_id, lease.lease_id)
            raise
        return Turn(
            session_id=record.session_id,
            number=record.turn_count,
            lease_id=lease.lease_id,
            resumed=lease.resumed,
            principal=principal,
            client=request.client,
            # Counted again now: the time spent waiting for the lease and preparing is gone from the deadline.
            budget_seconds=self._budget(request),
            history=history,
            memory=dict(record.memory),
            next_sequence=next_sequence,
            entries=[] if request.decision is not None else [UserText(request.message)],
            opening=opening,
        )

    async def _prepare(
        self, record: ChatSessionRecord, principal: Principal | None
    ) -> tuple[Principal | None, list[ConversationEntry]]:
        """The turn's principal (with its guest id, the session bound to it) and the history the model reads."""
        if principal is not None:
            principal = await self._with_guest_id(principal, record)
            if record.owner_sub is None:
                # A session used with a bearer belongs to that person from now on: nobody else may read its
                # history through the model.
                await self._store.bind_owner(record.session_id, sub=principal.sub, guest_id=principal.guest_id)
        history: list[ConversationEntry] = []
        if record.turn_count:
            turns = await self._store.recent_turns(
                record.session_id, before=record.turn_count, limit=self._limits.history_turns, now=self._clock()
            )
            for past in turns:
                history.extend(past.entries)
        return principal, history

    async def _with_guest_id(self, principal: Principal, record: ChatSessionRecord) -> Principal:
        """The principal with its guest id: from the token, the session, or the guest profile."""
        if principal.guest_id is not None:
            return principal
        guest_id = record.guest_id if record.owner_sub == principal.sub else None
        if guest_id is None and self._guests is not None:
            profile = await self._guests.get(principal.sub)
            guest_id = profile.guest_id if profile is not None else None
        return replace(principal, guest_id=guest_id) if guest_id else principal

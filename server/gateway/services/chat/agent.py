"""The chat service: one turn of the booking agent, from the person's message to TurnComplete.

A turn takes the session's lease (turns of one session never overlap, on any replica), then alternates model
rounds and tool calls until the model stops asking for tools, bounded in rounds and in time. Events stream out
as they happen, text merged by the coalescer; every event carries the session's next sequence number.

Cancellation (the client went away) cancels the producer task: the model's stream is closed and a running tool
is cancelled before the turn's task group exits, so nothing of the turn outlives the call. What happened so far
is recorded and the lease released. A booking is one transaction in the reservation service, so a cancelled
turn leaves either a whole booking or none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from gateway.domain import (
    AssistantText,
    ConversationEntry,
    JsonObject,
    Principal,
    Sub,
    TextChunk,
    TokenDelivery,
    ToolCall,
    ToolResult,
    TurnFacts,
    Usage,
    UserText,
)
from gateway.errors import (
    InvalidArgumentError,
    SessionNotFoundError,
    SessionNotOwnedError,
    TokenMissingError,
    UpstreamUnavailableError,
)
from gateway.ports import (
    AgentModel,
    BearerVerifier,
    ChatSessionRecord,
    ChatSessionStore,
    ChatTurnRecord,
    GuestLookup,
)
from gateway.redact import fingerprint
from gateway.services.chat.events import (
    ChatEvent,
    ChatEventBody,
    DeltaCoalescer,
    EndOfTurn,
    FlushPolicy,
    OutboxItem,
    SessionStarted,
    StopReason,
    StreamLoad,
    TextDelta,
    TokenDeliveryEvent,
    ToolCallFinished,
    ToolCallStarted,
    TurnComplete,
    TurnFailed,
    TurnOutbox,
)
from gateway.services.chat.tools import ToolContext, ToolRegistry

log = logging.getLogger(__name__)

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
LEASE_POLL_SECONDS = 0.1
INTERRUPTED = "INTERRUPTED"
REDACTED = "[redacted]"
# How long recording an interrupted turn may take after the client has gone.
RECORD_AFTER_CANCEL_SECONDS = 2.0


@dataclass(frozen=True)
class ChatLimits:
    """Bounds of a chat session and of one turn."""

    max_message_chars: int = 4000
    max_rounds: int = 8
    turn_timeout_seconds: float = 60.0
    session_ttl_seconds: float = 24 * 3600.0
    history_turns: int = 20
    # The lease outlives the turn's own time bound by this much, so only a crashed replica's lease expires.
    lease_margin_seconds: float = 10.0
    # A turn ends this long before the call's deadline, so that TurnComplete still reaches the client.
    deadline_margin_seconds: float = 0.5


@dataclass(frozen=True)
class ChatTurnRequest:
    """One message from the person, with what the transport knows about the call."""

    session_id: str
    message: str
    principal: Principal | None
    client: str = ""
    time_remaining: float | None = None


@dataclass
class _Turn:
    """The state of one turn in progress."""

    session_id: str
    number: int
    lease_id: str
    resumed: bool
    principal: Principal | None
    guest_id: str
    client: str
    budget_seconds: float
    history: list[ConversationEntry]
    memory: JsonObject
    next_sequence: int
    entries: list[ConversationEntry] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    rounds: int = 0
    committed: bool = False
    commit: asyncio.Future[None] | None = None
    running: ToolCall | None = None

    def conversation(self) -> list[ConversationEntry]:
        return [*self.history, *self.entries]

    def stamp(self, body: ChatEventBody) -> ChatEvent:
        event = ChatEvent(self.next_sequence, body)
        self.next_sequence += 1
        return event

    def record(self, stop_reason: str) -> ChatTurnRecord:
        """The turn as stored: unanswered tool calls answered as interrupted, secret arguments redacted."""
        answered = {e.call_id for e in self.entries if isinstance(e, ToolResult)}
        entries = list(self.entries)
        for entry in self.entries:
            if isinstance(entry, ToolCall) and entry.call_id not in answered:
                entries.append(
                    ToolResult(entry.call_id, entry.name, False, {"error": INTERRUPTED, "message": "not finished"})
                )
        return ChatTurnRecord(self.number, tuple(_redact(e, self.secrets) for e in entries), stop_reason)


def _scrub(value: Any, secrets_: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets_:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets_) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets_) for v in value]
    return value


def _redact(entry: ConversationEntry, secrets_: list[str]) -> ConversationEntry:
    if not secrets_:
        return entry
    if isinstance(entry, UserText | AssistantText):
        return replace(entry, text=_scrub(entry.text, secrets_))
    if isinstance(entry, ToolCall):
        return replace(entry, arguments=_scrub(entry.arguments, secrets_))
    return replace(entry, content=_scrub(entry.content, secrets_))


class ChatService:
    """Runs turns of the booking agent over stored chat sessions."""

    def __init__(
        self,
        store: ChatSessionStore,
        model: AgentModel,
        tools: ToolRegistry,
        verifier: BearerVerifier,
        *,
        guests: GuestLookup | None = None,
        limits: ChatLimits | None = None,
        flush: FlushPolicy | None = None,
        load: StreamLoad | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._model = model
        self._tools = tools
        self._verifier = verifier
        self._guests = guests
        self._limits = limits or ChatLimits()
        self._flush = flush or FlushPolicy()
        self.load = load or StreamLoad()
        self._clock = clock

    def _check_request(self, request: ChatTurnRequest) -> None:
        if not request.message.strip():
            raise InvalidArgumentError.for_field("message", "must not be empty")
        if len(request.message) > self._limits.max_message_chars:
            raise InvalidArgumentError.for_field(
                "message", f"must be at most {self._limits.max_message_chars} characters"
            )
        if request.session_id and not _SESSION_ID.match(request.session_id):
            raise InvalidArgumentError.for_field(
                "session_id", "is not a chat session id; send an empty session_id to start a new session"
            )

    @staticmethod
    def _check_owner(record: ChatSessionRecord, principal: Principal | None) -> None:
        if record.owner_sub is None:
            return
        if principal is None:
            raise TokenMissingError(
                'this chat belongs to a signed-in person: send "authorization: Bearer <access token>"'
            )
        if principal.sub != record.owner_sub:
            raise SessionNotOwnedError("this chat belongs to somebody else; start a new chat")

    def _budget(self, request: ChatTurnRequest) -> float:
        budget = self._limits.turn_timeout_seconds
        if request.time_remaining is not None:
            budget = min(budget, max(request.time_remaining - self._limits.deadline_margin_seconds, 0.0))
        return budget

    async def _hold(
        self, request: ChatTurnRequest, lease_id: str, lease_seconds: float
    ) -> tuple[ChatSessionRecord, bool]:
        """The session with its lease taken, and whether it existed before this turn."""
        if not request.session_id:
            now = self._clock()
            record = await self._store.create(
                secrets.token_urlsafe(16),
                lease_id=lease_id,
                lease_until=now + lease_seconds,
                expires_at=now + self._limits.session_ttl_seconds,
            )
            return record, False
        while True:
            found = await self._store.get(request.session_id)
            if found is None:
                raise SessionNotFoundError("no such chat session (it may have expired); start a new one")
            self._check_owner(found, request.principal)
            now = self._clock()
            held = await self._store.acquire(
                request.session_id,
                owner_sub=found.owner_sub,
                lease_id=lease_id,
                lease_until=now + lease_seconds,
                now=now,
            )
            if held is not None:
                return held, True
            # Another turn of this session is running (here or on another replica): wait for it to finish. Its
            # lease expires within its own time bound, and the call's deadline bounds this wait too.
            await asyncio.sleep(LEASE_POLL_SECONDS)

    async def _start(self, request: ChatTurnRequest) -> _Turn:
        budget = self._budget(request)
        lease_id = secrets.token_hex(8)
        record, resumed = await self._hold(request, lease_id, budget + self._limits.lease_margin_seconds)
        try:
            principal, history = await self._prepare(record, request.principal)
        except BaseException:
            # The turn never began: free the session at once rather than when the lease runs out.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(RECORD_AFTER_CANCEL_SECONDS):
                    await self._store.release(record.session_id, lease_id=lease_id)
            raise
        return _Turn(
            session_id=record.session_id,
            number=record.turn_count,
            lease_id=lease_id,
            resumed=resumed,
            principal=principal,
            guest_id=(principal.guest_id or "") if principal is not None else "",
            client=request.client,
            budget_seconds=budget,
            history=history,
            memory=dict(record.memory),
            next_sequence=record.next_sequence,
            entries=[UserText(request.message)],
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

    async def chat(self, request: ChatTurnRequest) -> AsyncGenerator[ChatEvent, None]:
        """Run one turn; yield its events. Errors before the first event are the call's status."""
        self._check_request(request)
        turn = await self._start(request)
        started = time.perf_counter()
        stop = INTERRUPTED
        with self.load.track():
            try:
                yield turn.stamp(
                    SessionStarted(turn.session_id, turn.resumed, turn.principal is not None, turn.guest_id)
                )
                # Closed here, not when garbage-collected: the producer has stopped before the turn is recorded.
                async with aclosing(self._stream(turn)) as events:
                    async for event in events:
                        if isinstance(event.body, TurnComplete):
                            stop = event.body.stop_reason.value
                        yield event
            finally:
                if not turn.committed:
                    await self._record_interrupted(turn)
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

    async def _stream(self, turn: _Turn) -> AsyncGenerator[ChatEvent, None]:
        loop = asyncio.get_running_loop()
        coalescer = DeltaCoalescer(self._flush, lambda: self._flush.interval(self.load.open))
        outbox = TurnOutbox(coalescer, loop.time)
        failure: Exception | None = None
        closed: GeneratorExit | None = None
        async with asyncio.TaskGroup() as group:
            producer = group.create_task(
                self._produce(turn, outbox.put), name=f"chat-turn-{fingerprint(turn.session_id)}"
            )
            try:
                async with aclosing(outbox.events()) as bodies:
                    async for body in bodies:
                        if isinstance(body, TurnComplete):
                            # Record the turn (and free the session) before the client hears it is over, so
                            # that its next message never waits for this turn's lease.
                            await self._commit(turn, body.stop_reason.value, turn.next_sequence + 1)
                        yield turn.stamp(body)
            except Exception as exc:
                # Raised after the group, so that the caller gets the error itself, not an ExceptionGroup.
                failure = exc
                producer.cancel()
            except GeneratorExit as exc:
                # The consumer closed this stream at a yield (the client went away). Re-raised after the group,
                # which would otherwise wrap it in an exception group that `aclose` does not expect.
                closed = exc
                producer.cancel()
        if closed is not None:
            raise closed
        if failure is not None:
            raise failure

    async def _produce(self, turn: _Turn, emit: Callable[[OutboxItem], None]) -> None:
        """The turn's producer task: never raises (a failure is handed to the consumer), except cancellation."""
        try:
            stop = await self._run_bounded(turn, emit)
            emit(TurnComplete(stop, turn.usage))
            emit(EndOfTurn())
        except Exception as exc:
            emit(TurnFailed(exc))

    async def _run_bounded(self, turn: _Turn, emit: Callable[[OutboxItem], None]) -> StopReason:
        try:
            async with asyncio.timeout(turn.budget_seconds) as bound:
                return await self._rounds(turn, emit)
        except TimeoutError:
            if not bound.expired():
                raise
            if turn.running is not None:
                call = turn.running
                emit(ToolCallFinished(call.call_id, call.name, False, "stopped: the turn ran out of time"))
            return StopReason.TIMEOUT
        except UpstreamUnavailableError:
            # Tools report their own failures as results; what reaches here is the model service failing.
            log.warning("model unavailable", extra={"session": fingerprint(turn.session_id)})
            return StopReason.MODEL_ERROR

    async def _rounds(self, turn: _Turn, emit: Callable[[OutboxItem], None]) -> StopReason:
        specs = self._tools.specs

        async def complete_sign_in(delivery: TokenDelivery) -> Principal:
            return await self._complete_sign_in(turn, delivery, emit)

        context = ToolContext(
            session_id=turn.session_id,
            principal=turn.principal,
            client=turn.client,
            turn_number=turn.number,
            complete_sign_in=complete_sign_in,
        )
        for _ in range(self._limits.max_rounds):
            turn.rounds += 1
            facts = TurnFacts(
                authenticated=turn.principal is not None,
                guest_id=turn.guest_id,
                today=datetime.fromtimestamp(self._clock(), UTC).date(),
            )
            text: list[str] = []
            calls: list[ToolCall] = []
            try:
                async with aclosing(self._model.run_round(turn.conversation(), specs, facts, turn.memory)) as outputs:
                    async for output in outputs:
                        if isinstance(output, TextChunk):
                            if output.text:
                                text.append(output.text)
                                emit(TextDelta(output.text))
                        elif isinstance(output, ToolCall):
                            calls.append(output)
                        else:
                            turn.usage = turn.usage + output.usage
            finally:
                # Text the person has seen is part of the conversation, even when the round was cut short.
                if text:
                    turn.entries.append(AssistantText("".join(text)))
            turn.entries.extend(calls)
            if not calls:
                return StopReason.END_TURN
            for call in calls:
                turn.running = call
                emit(ToolCallStarted(call.call_id, call.name))
                result, summary = await self._tools.run(call, context)
                turn.entries.append(result)
                turn.secrets.extend(self._tools.secret_arguments(call))
                turn.running = None
                emit(ToolCallFinished(call.call_id, call.name, result.ok, summary))
        return StopReason.MAX_ROUNDS

    async def _complete_sign_in(
        self, turn: _Turn, delivery: TokenDelivery, emit: Callable[[OutboxItem], None]
    ) -> Principal:
        """A code was verified in this stream: check the new access token, bind the session, deliver the tokens.

        From here on the turn's tools run as the person who signed in; later turns need their bearer.
        """
        principal = await self._verifier.verify(delivery.access_token)
        if principal.sub != delivery.sub:
            raise UpstreamUnavailableError("the sign-in could not be completed; try again")
        await self._store.bind_owner(turn.session_id, sub=Sub(principal.sub), guest_id=delivery.guest_id)
        principal = replace(principal, guest_id=delivery.guest_id, email=delivery.email)
        turn.principal = principal
        turn.guest_id = delivery.guest_id
        emit(TokenDeliveryEvent(delivery))
        return principal

    async def _commit(self, turn: _Turn, stop_reason: str, next_sequence: int) -> None:
        """Record the turn and free its session, once.

        A caller cancelled while the write runs does not stop it: a commit whose outcome is unknown would
        otherwise be written again as an interrupted turn, over the turn it had recorded. A later call waits
        for a write still running (or done) instead of starting another; only a failed write is tried again.
        """
        commit = turn.commit
        if commit is None or (commit.done() and (commit.cancelled() or commit.exception() is not None)):
            commit = turn.commit = asyncio.ensure_future(self._write_turn(turn, stop_reason, next_sequence))
        await asyncio.shield(commit)

    async def _write_turn(self, turn: _Turn, stop_reason: str, next_sequence: int) -> None:
        now = self._clock()
        kept = await self._store.finish_turn(
            turn.session_id,
            lease_id=turn.lease_id,
            turn=turn.record(stop_reason),
            next_sequence=next_sequence,
            memory=turn.memory,
            expires_at=now + self._limits.session_ttl_seconds,
        )
        turn.committed = True
        if not kept:
            log.warning("chat turn outlived its lease; not recorded", extra={"session": fingerprint(turn.session_id)})

    async def _record_interrupted(self, turn: _Turn) -> None:
        """Record what an interrupted turn did and free the session, in bounded time; never raises."""
        try:
            async with asyncio.timeout(RECORD_AFTER_CANCEL_SECONDS):
                await self._commit(turn, INTERRUPTED, turn.next_sequence)
        except (Exception, asyncio.CancelledError):
            log.warning(
                "interrupted chat turn not recorded; its lease will expire",
                extra={"session": fingerprint(turn.session_id)},
            )

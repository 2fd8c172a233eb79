"""The turn runner: model rounds and tool calls until the model is done, bounded in rounds and in time.

The rounds run in a producer task that `put`s every event into the turn's outbox without waiting; the stream
(`TurnRunner.run`) consumes the outbox, which merges text through the coalescer. The producer runs in a task
group owned by the stream: when the stream is closed or cancelled (the client went away) the producer is
cancelled, which closes the model's stream and cancels a running tool, before the stream's `aclose` returns.
So nothing of the turn outlives the call. Recording the turn is the caller's (`recorder.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from datetime import UTC, datetime

from gateway.domain import AssistantText, Calendar, TextChunk, ToolCall, TurnFacts, UserText
from gateway.errors import GatewayError, UpstreamUnavailableError
from gateway.ports import AgentModel
from gateway.redact import fingerprint
from gateway.services.chat.approval import ApprovalGate
from gateway.services.chat.coalescer import DeltaCoalescer, FlushPolicy, StreamLoad
from gateway.services.chat.events import (
    ChatEventBody,
    StopReason,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnComplete,
)
from gateway.services.chat.outbox import EndOfTurn, OutboxItem, TurnFailed, TurnOutbox
from gateway.services.chat.sign_in import ChatSignIn
from gateway.services.chat.tools import ToolContext, ToolRegistry, redact_codes, typed_codes
from gateway.services.chat.turn import ChatLimits, Turn

log = logging.getLogger(__name__)


class TurnRunner:
    """Runs the model and the tools of a turn and streams what happens, ending with `TurnComplete`."""

    def __init__(
        self,
        model: AgentModel,
        tools: ToolRegistry,
        sign_in: ChatSignIn,
        approvals: ApprovalGate,
        *,
        limits: ChatLimits,
        flush: FlushPolicy,
        load: StreamLoad,
        clock: Callable[[], float],
        calendar: Calendar | None = None,
    ) -> None:
        # Without a calendar, today is the UTC date of `clock`.
        self._calendar = calendar or Calendar.named("UTC", lambda: datetime.fromtimestamp(clock(), UTC))
        self._model = model
        self._tools = tools
        self._sign_in = sign_in
        self._approvals = approvals
        self._limits = limits
        self._flush = flush
        self._load = load
        self._clock = clock

    async def run(self, turn: Turn) -> AsyncGenerator[ChatEventBody, None]:
        """The turn's events after `SessionStarted`, as they should be sent; `TurnComplete` is the last.

        A failure of the gateway itself (a bug, the session store down) is raised here, as itself.
        """
        loop = asyncio.get_running_loop()
        flush = self._flush
        load = self._load
        coalescer = DeltaCoalescer(flush, lambda: flush.interval(load.open))
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
                        yield body
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

    async def _produce(self, turn: Turn, emit: Callable[[OutboxItem], None]) -> None:
        """The turn's producer task: never raises (a failure is handed to the consumer), except cancellation.

        `Turn.stop` cancels it: the model's stream is closed and a running tool cancelled, then the turn ends
        with the stop's reason.
        """
        task = asyncio.current_task()
        turn.producer = task
        try:
            stop = turn.stopping or await self._run_bounded(turn, emit)
            emit(TurnComplete(stop, turn.usage))
            emit(EndOfTurn())
        except asyncio.CancelledError:
            # Only the stop's own cancellation is absorbed; the consumer going away cancels again.
            if turn.stopping is None or task is None or task.uncancel() > 0:
                raise
            if turn.running is not None:
                call = turn.running
                turn.running = None
                emit(ToolCallFinished(call.call_id, call.name, False, "stopped: the turn was stopped"))
            emit(TurnComplete(turn.stopping, turn.usage))
            emit(EndOfTurn())
        except Exception as exc:
            emit(TurnFailed(exc))

    async def _run_bounded(self, turn: Turn, emit: Callable[[OutboxItem], None]) -> StopReason:
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

    async def _screen_codes(self, turn: Turn) -> None:
        """Redact the codes the person typed from what the model reads, unless a sign-in of the session waits for
        one (and the turn is not signed in yet): a code typed when none is expected is nobody's business."""
        if not turn.entries or not isinstance(turn.entries[0], UserText):
            return
        text = turn.entries[0].text
        codes = typed_codes(text)
        if not codes:
            return
        if turn.principal is None:
            try:
                if await self._tools.sign_in_pending(turn.session_id):
                    return
            except GatewayError:
                log.warning(
                    "sign-in state unknown; typed code redacted", extra={"session": fingerprint(turn.session_id)}
                )
        turn.entries[0] = UserText(redact_codes(text))

    async def _rounds(self, turn: Turn, emit: Callable[[OutboxItem], None]) -> StopReason:
        await self._screen_codes(turn)
        specs = self._tools.specs
        # The tools complete an in-chat sign-in themselves, through the sign-in service, and say who the turn
        # runs as from then on in `context.principal`.
        context = ToolContext(
            session_id=turn.session_id,
            principal=turn.principal,
            client=turn.client,
            turn_number=turn.number,
            sign_in=self._sign_in,
            emit=emit,
        )
        # A call the previous turn held for approval is answered first: the decision's action, or a withdrawal.
        await self._approvals.open(turn, context, emit)
        turn.principal = context.principal
        for _ in range(self._limits.max_rounds):
            turn.rounds += 1
            facts = TurnFacts(
                authenticated=turn.principal is not None,
                guest_id=turn.guest_id,
                today=self._calendar.today(),
                time_zone=self._calendar.zone_name,
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
                if self._approvals.guards(call.name):
                    # Never run on the model's word: held for the person's decision, or refused as asked.
                    refused = await self._approvals.hold(turn, call, context, emit)
                    if refused is None:
                        turn.running = None
                        continue
                    emit(ToolCallStarted(call.call_id, call.name))
                    result, summary = refused
                else:
                    emit(ToolCallStarted(call.call_id, call.name))
                    result, summary = await self._tools.run(call, context)
                turn.principal = context.principal
                turn.entries.append(result)
                turn.secrets.extend(self._tools.secret_arguments(call))
                turn.running = None
                emit(ToolCallFinished(call.call_id, call.name, result.ok, summary))
            if turn.held is not None:
                return StopReason.AWAITING_APPROVAL
        return StopReason.MAX_ROUNDS

"""Consent the model cannot forge: the tools that change state run only on the person's decision.

When the model asks for `create_reservation` or `cancel_reservation`, the runner hands the call here instead of
running it (`ApprovalGate.hold`): the gateway checks the arguments and the person, writes the summary itself from
the validated arguments and current data (the property's name and price, the reservation's stay), stores the
pending action under the chat session (`ApprovalStore`, so any replica can take the decision), emits
`ApprovalRequested` and the turn ends with AWAITING_APPROVAL. The held tool call stays unanswered in the stored
conversation; the next turn answers it before its first model round, so a Converse model reads its `toolUse`
answered by a `toolResult` only after the decision:

- a decision (`ChatTurnRequest.decision`, taken in `decide` before the turn waits for the session, by one
  conditional write: the owner only, once, before it expires; a refusal is the call's status) either runs
  exactly the stored call, re-checked now by the tool itself (a stay taken meanwhile is NIGHTS_TAKEN), or
  answers it as declined; the agent then goes on in the same turn with that result;
- a plain message withdraws the pending approval: the held call is answered as withdrawn (or expired) and the
  message is handled as usual. No text approves anything: a typed "yes" is a message. (A message and a decision
  sent at the same moment: whichever takes the session first wins; the decision is then refused, the model told
  to check the reservations. Nothing ever runs twice or unapproved.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import secrets
from collections.abc import Callable, Sequence

from gateway.domain import (
    ConversationEntry,
    PendingAction,
    Principal,
    Stay,
    ToolCall,
    ToolResult,
)
from gateway.errors import (
    ApprovalNotFoundError,
    CapacityExceededError,
    GatewayError,
    NightsTakenError,
    SessionNotFoundError,
)
from gateway.ports import ApprovalStore, ChatSessionStore
from gateway.redact import fingerprint
from gateway.services.chat.backends import BookingTools
from gateway.services.chat.events import ApprovalRequested, Emit, ToolCallFinished, ToolCallStarted
from gateway.services.chat.lease import RECORD_AFTER_CANCEL_SECONDS, check_owner
from gateway.services.chat.tools import (
    Outcome,
    ToolContext,
    ToolRegistry,
    failed,
    money,
    service_refusal,
    sign_in_required,
)
from gateway.services.chat.turn import ChatTurnRequest, Opening, Turn

log = logging.getLogger(__name__)

APPROVAL_TOOLS = frozenset({"create_reservation", "cancel_reservation"})
"""The tools with side effects: the gateway holds them for the person's approval."""

DEFAULT_APPROVAL_TTL_SECONDS = 600.0


def held_call(history: Sequence[ConversationEntry]) -> ToolCall | None:
    """The call of an approval tool the conversation left unanswered (held for a decision), if any."""
    answered = {entry.call_id for entry in history if isinstance(entry, ToolResult)}
    held = [e for e in history if isinstance(e, ToolCall) and e.name in APPROVAL_TOOLS and e.call_id not in answered]
    return held[-1] if held else None


DASH = "\u2013"  # an en dash, as in "12-15 Mar 2027" typeset


def _span(check_in: datetime.date, check_out: datetime.date) -> str:
    """A stay's dates, shortest first: "12-15 Mar 2027", "30 Mar - 2 Apr 2027", "30 Dec 2026 - 2 Jan 2027"."""
    if check_in.year != check_out.year:
        return f"{check_in.day} {check_in:%b %Y} {DASH} {check_out.day} {check_out:%b %Y}"
    if check_in.month != check_out.month:
        return f"{check_in.day} {check_in:%b} {DASH} {check_out.day} {check_out:%b %Y}"
    return f"{check_in.day}{DASH}{check_out.day} {check_out:%b %Y}"


def _count(number: int, one: str) -> str:
    return f"{number} {one}{'' if number == 1 else 's'}"


def stay_summary(name: str, stay: Stay, total: str) -> str:
    """A stay in the approval's words: property, dates, nights, guests and total price."""
    nights = (stay.check_out - stay.check_in).days
    span = _span(stay.check_in, stay.check_out)
    return f"{name}, {span}, {_count(nights, 'night')}, {_count(stay.guests, 'guest')}, {total}"


def _nothing_done(name: str) -> str:
    return "nothing was booked" if name == "create_reservation" else "nothing was cancelled"


class ApprovalGate:
    """Holds the approval tools' calls for the person's decision, and resolves them on the next turn.

    Without a store (`store=None`) the approval tools are refused: they never run unapproved.
    """

    def __init__(
        self,
        sessions: ChatSessionStore,
        store: ApprovalStore | None,
        booking: BookingTools | None,
        tools: ToolRegistry,
        *,
        ttl_seconds: float = DEFAULT_APPROVAL_TTL_SECONDS,
        session_ttl_seconds: float = 24 * 3600.0,
        clock: Callable[[], float],
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._booking = booking
        self._tools = tools
        self._ttl = ttl_seconds
        self._session_ttl = session_ttl_seconds
        self._clock = clock

    @staticmethod
    def guards(name: str) -> bool:
        """True for a tool that runs only on the person's decision."""
        return name in APPROVAL_TOOLS

    # --- before the turn's first event: the decision, or a withdrawal -------------------------------------------

    async def decide(self, request: ChatTurnRequest) -> PendingAction:
        """Take the request's decision, before its turn waits for the session: one conditional write.

        Only the session's owner decides (a bound session needs their bearer: `check_owner`); of many concurrent
        decisions on one approval one wins and the others are refused at once, without queueing for the session.
        Raises the refusal (`ApprovalNotFoundError`, `ApprovalExpiredError`, `ApprovalAlreadyUsedError`).
        """
        assert request.decision is not None
        session = await self._sessions.get(request.session_id)
        if session is None:
            raise SessionNotFoundError("no such chat session (it may have expired); start a new one")
        check_owner(session, request.principal)
        if request.principal is None or self._store is None:
            raise ApprovalNotFoundError("no such approval in this chat session")
        action = await self._store.decide(
            request.session_id, request.decision, owner_sub=request.principal.sub, now=self._clock()
        )
        log.info(
            "approval decided",
            extra={
                "session": fingerprint(request.session_id),
                "tool": action.call.name,
                "approve": request.decision.approve,
            },
        )
        return action

    async def begin(
        self,
        request: ChatTurnRequest,
        history: Sequence[ConversationEntry],
        decided: PendingAction | None,
    ) -> Opening | None:
        """How the turn, now holding the session, opens on a held call: the decision taken, or a withdrawal."""
        held = held_call(history)
        if decided is not None and request.decision is not None:
            if held is None or held.call_id != decided.call.call_id:
                # A message sent at the same moment took the session first and withdrew the call.
                raise ApprovalNotFoundError("that approval no longer waits in this chat session")
            return Opening(held, decided=decided, approve=request.decision.approve)
        if held is None:
            return None
        state = ""
        if self._store is not None:
            state = await self._store.withdraw(request.session_id, call_id=held.call_id, now=self._clock())
        return Opening(held, withdrawn=state)

    # --- before the first round: answer the held call -----------------------------------------------------------

    async def open(self, turn: Turn, context: ToolContext, emit: Emit) -> None:
        """Answer the call the previous turn held: run the stored action, or say it was declined or withdrawn."""
        opening = turn.opening
        if opening is None:
            return
        held = opening.held
        emit(ToolCallStarted(held.call_id, held.name))
        if opening.decided is not None and opening.approve:
            # Exactly the stored call (its arguments bound to the approval), re-checked by the tool as it runs.
            try:
                result, summary = await self._tools.run(opening.decided.call, context)
            except BaseException:
                # Cut short (the client went away, the turn's time ran out): the stored turn says so.
                interrupted = {
                    "error": "INTERRUPTED",
                    "message": "interrupted while it ran; check list_my_reservations",
                }
                turn.entries.insert(0, ToolResult(held.call_id, held.name, False, interrupted))
                raise
        else:
            outcome = self._unapproved(opening)
            result = ToolResult(held.call_id, held.name, outcome.ok, outcome.content)
            summary = outcome.summary
        turn.entries.insert(0, result)
        emit(ToolCallFinished(held.call_id, held.name, result.ok, summary))

    @staticmethod
    def _unapproved(opening: Opening) -> Outcome:
        """The held call's answer when it did not run: for the model (content) and for the person (summary)."""
        nothing = _nothing_done(opening.held.name)
        if opening.decided is not None:
            reason, why, tell = "APPROVAL_DECLINED", "declined", "the person declined"
        elif opening.withdrawn == "EXPIRED":
            reason, why, tell = "APPROVAL_EXPIRED", "expired", "the approval expired before the person decided"
        elif opening.withdrawn in ("APPROVED", "DECLINED"):
            message = "the decision's turn was interrupted; check list_my_reservations before trying again"
            return Outcome(False, {"error": "APPROVAL_WITHDRAWN", "message": message}, "interrupted: check the list")
        else:
            reason, why, tell = "APPROVAL_WITHDRAWN", "withdrawn", "the person wrote a message instead of deciding"
        message = f"{tell}: {nothing}. Say so, and answer what the person says next"
        return Outcome(False, {"error": reason, "message": message}, f"{why}: {nothing}")

    # --- in a round: hold a call --------------------------------------------------------------------------------

    async def hold(self, turn: Turn, call: ToolCall, context: ToolContext, emit: Emit) -> tuple[ToolResult, str] | None:
        """Hold `call` for the person's decision (emit `ApprovalRequested`; None), or say why it cannot be."""
        outcome = await self._prepare(turn, call, context, emit)
        if outcome is None:
            return None
        return ToolResult(call.call_id, call.name, outcome.ok, outcome.content), outcome.summary

    async def _prepare(self, turn: Turn, call: ToolCall, context: ToolContext, emit: Emit) -> Outcome | None:
        if turn.held is not None:
            return failed(
                "INVALID_ARGUMENT",
                "one action at a time: an earlier call in this reply waits for the person's decision",
            )
        refusal = self._tools.refused(call)
        if refusal is not None:
            return refusal
        principal = context.principal
        if principal is None:
            return sign_in_required()
        if self._store is None or self._booking is None:
            return failed("INTERNAL", "this gateway cannot ask for approvals, so it books and cancels nothing")
        try:
            summary = await self._summary(call, principal)
            now = self._clock()
            action = PendingAction(
                approval_id="apv_" + secrets.token_urlsafe(18),
                session_id=turn.session_id,
                owner_sub=principal.sub,
                call=call,
                summary=summary,
                decide_by=now + self._ttl,
            )
            await self._store_while_stoppable(action, expires_at=now + self._session_ttl)
        except GatewayError as exc:
            return service_refusal(exc)
        turn.held = call
        emit(ApprovalRequested(action.approval_id, call.name, summary, action.decide_by))
        return None

    async def _store_while_stoppable(self, action: PendingAction, *, expires_at: float) -> None:
        """Store `action`; if the turn is stopped meanwhile, finish the write and withdraw it before stopping.

        A write cut short may still land (the request was sent): an approval nobody was shown would then wait in
        the table until the session expires. So the write runs to its end (shielded from the turn's
        cancellation), and a stopped turn withdraws what it wrote before the cancellation goes on.
        """
        assert self._store is not None
        writing = asyncio.ensure_future(self._store.hold(action, expires_at=expires_at))
        try:
            await asyncio.shield(writing)
        except asyncio.CancelledError:
            await self._withdraw_unshown(writing, action)
            raise

    async def _withdraw_unshown(self, writing: asyncio.Future[None], action: PendingAction) -> None:
        """Withdraw what the stopped turn may have written, in bounded time (the turn is ending)."""
        assert self._store is not None
        try:
            async with asyncio.timeout(RECORD_AFTER_CANCEL_SECONDS):
                with contextlib.suppress(Exception):
                    # Landed or not (a failed or lost answer says nothing sure): the withdrawal finds out.
                    await asyncio.shield(writing)
                await self._store.withdraw(action.session_id, call_id=action.call.call_id, now=self._clock())
        except (GatewayError, TimeoutError):
            log.warning("an approval the stopped turn never showed may stay pending until it expires")
        else:
            log.info("withdrew an approval its stopped turn never showed", extra={"tool": action.call.name})

    async def _summary(self, call: ToolCall, principal: Principal) -> str:
        """What approving does, in the gateway's words, from the validated arguments and current data."""
        assert self._booking is not None
        arguments = call.arguments
        if call.name == "create_reservation":
            stay = Stay(
                property_id=str(arguments["property_id"]),
                check_in=datetime.date.fromisoformat(str(arguments["check_in"])),
                check_out=datetime.date.fromisoformat(str(arguments["check_out"])),
                guests=int(arguments["guests"]),
            )
            found = await self._booking.check_availability(stay)
            if stay.guests > found.property.capacity:
                raise CapacityExceededError(
                    f"{found.property.name} holds at most {found.property.capacity} guests",
                    metadata={"capacity": str(found.property.capacity)},
                )
            if not found.available:
                taken = ",".join(n.night.isoformat() for n in found.nights if not n.available)
                raise NightsTakenError(
                    "some nights of this stay are already booked; choose other dates", metadata={"nights": taken}
                )
            return "Book " + stay_summary(found.property.name, stay, money(found.total_cents, found.currency))
        reservation = await self._booking.get_reservation(principal, str(arguments["reservation_id"]))
        return f"Cancel {reservation.reservation_id}: " + stay_summary(
            reservation.property_name, reservation.stay, money(reservation.total_cents, reservation.currency)
        )

"""What a chat turn is made of: the person's request, the bounds it runs within, and its state while it runs.

A leaf of the chat package: the lease, the runner and the recorder all read a `Turn`; none of them owns it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway.domain import ApprovalDecision, ConversationEntry, JsonObject, PendingAction, Principal, ToolCall, Usage
from gateway.services.chat.events import ChatEvent, ChatEventBody, StopReason


@dataclass(frozen=True)
class ChatLimits:
    """Bounds of a chat session and of one turn."""

    max_message_chars: int = 4000
    max_rounds: int = 8
    turn_timeout_seconds: float = 60.0
    session_ttl_seconds: float = 24 * 3600.0
    history_turns: int = 20
    # A booking or cancellation held for the person's approval waits this long for their decision.
    approval_ttl_seconds: float = 600.0
    # The lease outlives the turn's own time bound by this much, so only a crashed replica's lease expires.
    lease_margin_seconds: float = 10.0
    # A turn ends this long before the call's deadline, so that TurnComplete still reaches the client.
    deadline_margin_seconds: float = 0.5
    # A lease held by another replica is tried again after this delay, doubling up to the maximum (lease.py).
    lease_retry_first_seconds: float = 0.020
    lease_retry_max_seconds: float = 1.0


@dataclass(frozen=True)
class ChatTurnRequest:
    """One message (or a decision on an approval) from the person, with what the transport knows about the call."""

    session_id: str
    message: str
    principal: Principal | None
    client: str = ""
    # When the call expires, on `time.monotonic()`'s clock (None: no deadline). A turn's time is counted from it
    # when the turn starts, so whatever ran before (limits, waiting for the session, reading history) is gone.
    deadline: float | None = None
    decision: ApprovalDecision | None = None


@dataclass(frozen=True)
class Opening:
    """How a turn starts on a call the previous turn held for approval.

    `decided` is the stored action, taken by this turn's decision (`approve` says which way); without it the
    person wrote a message instead, and `withdrawn` is how the pending approval ended ("WITHDRAWN", "EXPIRED",
    or a state it had already).
    """

    held: ToolCall
    decided: PendingAction | None = None
    approve: bool = False
    withdrawn: str = ""


@dataclass
class Turn:
    """The state of one turn in progress.

    `principal` is the turn's caller; it becomes the person who signed in when a code is verified in the turn.
    `secrets` are argument values (codes) the recorder redacts from the stored conversation; `commit` and
    `committed` are the recorder's, which writes a turn once.
    """

    session_id: str
    number: int
    lease_id: str
    resumed: bool
    principal: Principal | None
    client: str
    budget_seconds: float
    history: list[ConversationEntry]
    memory: JsonObject
    next_sequence: int
    entries: list[ConversationEntry] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    rounds: int = 0
    running: ToolCall | None = None
    committed: bool = False
    commit: asyncio.Future[None] | None = None
    # Approvals (`approval.py`): `opening` resolves the call a previous turn held (a decision taken, or a
    # withdrawal), before the first round; `held` is this turn's call waiting for a decision (left unanswered).
    opening: Opening | None = None
    held: ToolCall | None = None
    # Set by `stop` (CancelTurn, a drain): the producer ends the turn with this reason (runner.py).
    stopping: StopReason | None = None
    producer: asyncio.Task[None] | None = None

    def stop(self, reason: StopReason) -> bool:
        """Stop the turn's model and tools now; it ends with `TurnComplete(reason)`. False if it is already stopping
        or its model and tools are done (its TurnComplete is on its way)."""
        if self.stopping is not None or (self.producer is not None and self.producer.done()):
            return False
        self.stopping = reason
        if self.producer is not None and not self.producer.done():
            self.producer.cancel()
        return True

    @property
    def guest_id(self) -> str:
        """The principal's guest id, or "" for an anonymous turn or a guest not known yet."""
        return (self.principal.guest_id or "") if self.principal is not None else ""

    def conversation(self) -> list[ConversationEntry]:
        """What the model reads: the stored history, then this turn so far."""
        return [*self.history, *self.entries]

    def stamp(self, body: ChatEventBody) -> ChatEvent:
        """The event with the session's next sequence number."""
        event = ChatEvent(self.next_sequence, body)
        self.next_sequence += 1
        return event

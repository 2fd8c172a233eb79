"""The chat stream's events, in the gateway's own words: what a turn tells the person, in order.

The coalescer that merges text deltas is `coalescer.py`; the hand-off from a turn's producer to its stream is
`outbox.py`. This module imports nothing else of the chat package.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.domain import TokenDelivery, Usage


@dataclass(frozen=True)
class SessionStarted:
    """The first event of every turn."""

    session_id: str
    resumed: bool
    authenticated: bool
    guest_id: str
    # Only in the stream of the caller of a keep_running turn (durable.py); never kept.
    resume_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class TextDelta:
    """More of the agent's reply."""

    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    """The agent started a tool."""

    call_id: str
    name: str


@dataclass(frozen=True)
class ToolCallFinished:
    """A tool finished; `summary` is short, human-readable and never holds tokens or codes."""

    call_id: str
    name: str
    ok: bool
    summary: str


@dataclass(frozen=True)
class TokenDeliveryEvent:
    """The person signed in inside the chat: the client stores these tokens. Written by the gateway only."""

    delivery: TokenDelivery = field(repr=False)


@dataclass(frozen=True)
class TokenDeliveryExpired:
    """Replaces a kept TokenDelivery in a replay when it can no longer be opened (durable.py)."""

    guest_id: str


@dataclass(frozen=True)
class ApprovalRequested:
    """The gateway holds a booking or cancellation until the person decides; `summary` is the gateway's own."""

    approval_id: str
    tool_name: str
    summary: str
    expires_at: float


class StopReason(enum.Enum):
    """Why a turn ended."""

    END_TURN = "END_TURN"
    MAX_ROUNDS = "MAX_ROUNDS"
    TIMEOUT = "TIMEOUT"
    MODEL_ERROR = "MODEL_ERROR"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"


@dataclass(frozen=True)
class TurnComplete:
    """The last event of every turn."""

    stop_reason: StopReason
    usage: Usage


ChatEventBody = (
    SessionStarted
    | TextDelta
    | ToolCallStarted
    | ToolCallFinished
    | TokenDeliveryEvent
    | TokenDeliveryExpired
    | ApprovalRequested
    | TurnComplete
)


@dataclass(frozen=True)
class ChatEvent:
    """An event with its sequence number, which increases by one with every event of the session."""

    sequence: int
    body: ChatEventBody


Emit = Callable[[ChatEventBody], None]
"""Hands one event of the turn to its stream; never waits (`TurnOutbox.put` fits)."""

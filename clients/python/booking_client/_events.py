"""Typed events of a chat turn, made from `booking.v1.ChatEvent` messages.

`SignedIn` replaces the wire's `TokenDelivery`: the client has already stored the tokens, and the event carries
the resulting `Session` (whose repr shows no token).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from booking.v1 import chat_pb2
from booking_client.session import Session


@dataclass(frozen=True)
class SessionStarted:
    """The first event of every turn: the chat session, and whether the gateway saw a valid bearer."""

    sequence: int
    session_id: str
    resumed: bool
    authenticated: bool
    guest_id: str


@dataclass(frozen=True)
class TextDelta:
    """More of the agent's reply text."""

    sequence: int
    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    """The agent started a tool."""

    sequence: int
    call_id: str
    name: str


@dataclass(frozen=True)
class ToolCallFinished:
    """A tool finished; `summary` is short and never holds tokens or codes."""

    sequence: int
    call_id: str
    name: str
    ok: bool
    summary: str


@dataclass(frozen=True)
class SignedIn:
    """The agent verified a sign-in code; the client stored `session` and sends its bearer from now on."""

    sequence: int
    session: Session


@dataclass(frozen=True)
class ApprovalRequested:
    """The agent wants to book or cancel; the gateway holds it until the person decides.

    Show `summary` (written by the gateway, not the model) and answer with `client.approve(approval_id)` or
    `client.decline(approval_id)` before `expires_at`. The turn then ends with stop reason "AWAITING_APPROVAL".
    """

    sequence: int
    approval_id: str
    tool_name: str
    summary: str
    expires_at: datetime.datetime


@dataclass(frozen=True)
class TurnComplete:
    """The last event of every turn. `stop_reason` is like "END_TURN", "AWAITING_APPROVAL", "MAX_ROUNDS",
    "TIMEOUT", "MODEL_ERROR", "CANCELLED" (`cancel()`), "INTERRUPTED" (the replica running it went away)."""

    sequence: int
    stop_reason: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class DeliveryExpired:
    """A replayed sign-in whose tokens can no longer be opened (older than 10 minutes, or another resume token):
    sign in again."""

    sequence: int
    guest_id: str


@dataclass(frozen=True)
class Reconnecting:
    """The stream dropped (network change, deadline, a replica going away); the client resumes the turn after
    `delay_seconds` (attempt `attempt`). Nothing is lost or repeated: events carry on after `sequence`, the last
    one received."""

    sequence: int
    attempt: int
    delay_seconds: float
    reason: str


ChatEvent = (
    SessionStarted
    | TextDelta
    | ToolCallStarted
    | ToolCallFinished
    | SignedIn
    | ApprovalRequested
    | DeliveryExpired
    | Reconnecting
    | TurnComplete
)


def stop_reason_name(value: int) -> str:
    """`STOP_REASON_END_TURN` -> "END_TURN" (and "UNSPECIFIED" for values this client does not know)."""
    try:
        name = chat_pb2.StopReason.Name(value)  # type: ignore[arg-type]
    except ValueError:
        return "UNSPECIFIED"
    return name.removeprefix("STOP_REASON_")

"""How kept chat events look in the journal (`ChatEventJournal`), and recovering from a turn whose replica died.

A kept event is a small JSON object: `{"k": kind, ...}`. A TokenDelivery is never kept readable: its event is a
placeholder (`{"k": "token", "guest": ..., "until": ...}`) and the tokens are a `SealedDelivery` beside it
(`seal.py`). This module imports nothing of the chat package but its vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.domain import JsonObject, Usage
from gateway.ports import ChatEventJournal, ChatSessionRecord, KeptEvent
from gateway.services.chat.events import (
    ApprovalRequested,
    ChatEventBody,
    SessionStarted,
    StopReason,
    TextDelta,
    TokenDeliveryEvent,
    TokenDeliveryExpired,
    ToolCallFinished,
    ToolCallStarted,
    TurnComplete,
)

DELIVERY_KIND = "token"


def encode_body(body: ChatEventBody, sealed_until: float = 0.0) -> JsonObject:
    """The event's body as kept: a TokenDelivery only as its placeholder (its tokens are sealed apart)."""
    if isinstance(body, TextDelta):
        return {"k": "text", "t": body.text}
    if isinstance(body, ToolCallStarted):
        return {"k": "tool_start", "id": body.call_id, "name": body.name}
    if isinstance(body, ToolCallFinished):
        return {"k": "tool_end", "id": body.call_id, "name": body.name, "ok": body.ok, "summary": body.summary}
    if isinstance(body, TokenDeliveryEvent):
        return {"k": DELIVERY_KIND, "guest": body.delivery.guest_id, "until": sealed_until}
    if isinstance(body, TokenDeliveryExpired):
        return {"k": DELIVERY_KIND, "guest": body.guest_id, "until": 0.0}
    if isinstance(body, ApprovalRequested):
        return {
            "k": "approval",
            "id": body.approval_id,
            "name": body.tool_name,
            "summary": body.summary,
            "until": body.expires_at,
        }
    if isinstance(body, SessionStarted):
        return {
            "k": "start",
            "sid": body.session_id,
            "resumed": body.resumed,
            "auth": body.authenticated,
            "guest": body.guest_id,
        }
    return {
        "k": "end",
        "stop": body.stop_reason.value,
        "in": body.usage.input_tokens,
        "out": body.usage.output_tokens,
    }


def interrupted_after_loss(first_lost: int, window: int) -> KeptEvent:
    """The TurnComplete(INTERRUPTED) of a turn whose replica died: numbered after every event it may have sent
    live but not kept (at most `window` past the last kept), with where the loss starts (`gap`)."""
    body = encode_body(TurnComplete(StopReason.INTERRUPTED, Usage()))
    body["gap"] = first_lost
    return KeptEvent(first_lost + window, body)


def decode_body(data: JsonObject) -> ChatEventBody:
    """A kept event's body; a TokenDelivery placeholder decodes as `TokenDeliveryExpired` (the caller unseals)."""
    kind = data["k"]
    if kind == "text":
        return TextDelta(str(data["t"]))
    if kind == "tool_start":
        return ToolCallStarted(str(data["id"]), str(data["name"]))
    if kind == "tool_end":
        return ToolCallFinished(str(data["id"]), str(data["name"]), bool(data["ok"]), str(data["summary"]))
    if kind == DELIVERY_KIND:
        return TokenDeliveryExpired(str(data["guest"]))
    if kind == "approval":
        return ApprovalRequested(str(data["id"]), str(data["name"]), str(data["summary"]), float(data["until"]))
    if kind == "start":
        return SessionStarted(str(data["sid"]), bool(data["resumed"]), bool(data["auth"]), str(data["guest"]))
    if kind == "end":
        return TurnComplete(StopReason(data["stop"]), Usage(int(data["in"]), int(data["out"])))
    raise ValueError(f"unknown kept event kind {kind!r}")


async def recover_interrupted(
    journal: ChatEventJournal,
    record: ChatSessionRecord,
    *,
    window: int,
    session_ttl_seconds: float,
    clock: Callable[[], float] = time.time,
) -> int:
    """The next sequence of a turn that took the lease of a keep_running turn that never ended (its replica died).

    The dead turn's kept events stay; if its last kept event is not its TurnComplete, a
    `TurnComplete(INTERRUPTED)` is kept after every sequence it may have sent live (`interrupted_after_loss`), so
    that its followers end and no sequence means two things. The new turn numbers its events after that.
    """
    last = await journal.last_sequence(record.session_id)
    if last >= record.next_sequence:
        page = await journal.read(record.session_id, after=last - 1)
        if page.events and page.events[-1].body.get("k") == "end":
            return last + 1
    interrupted = interrupted_after_loss(max(last, record.next_sequence - 1) + 1, window)
    await journal.append(
        record.session_id,
        [interrupted],
        [],
        expires_at=clock() + session_ttl_seconds,
        bound=record.owner_sub is not None,
    )
    return interrupted.sequence + 1

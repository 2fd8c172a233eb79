"""The turn recorder: writes a turn to the session's history once, and frees the session.

A finished turn is recorded before the client hears `TurnComplete`, so the next message never waits for its
lease. An interrupted turn (the client went away, the gateway failed) is recorded as `INTERRUPTED`, in bounded
time: unanswered tool calls are answered as interrupted, and secrets are redacted from everything stored: secret
tool arguments, and every code typed in the chat (`tools.typed_codes`: a `CODE_IN_TEXT` run outside an email
address), whether a sign-in waited for it or not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gateway.domain import AssistantText, ConversationEntry, ToolCall, ToolResult, UserText
from gateway.ports import ChatSessionStore, ChatTurnRecord
from gateway.redact import fingerprint
from gateway.services.chat.lease import RECORD_AFTER_CANCEL_SECONDS, SessionLeases
from gateway.services.chat.tools import REDACTED, typed_codes
from gateway.services.chat.turn import ChatLimits, Turn

log = logging.getLogger(__name__)

INTERRUPTED = "INTERRUPTED"


def stored_turn(turn: Turn, stop_reason: str) -> ChatTurnRecord:
    """The turn as stored: unanswered tool calls (but a held one) answered as interrupted, secrets redacted."""
    answered = {e.call_id for e in turn.entries if isinstance(e, ToolResult)}
    if turn.held is not None:
        # Held for the person's decision: the next turn answers it (approval.py).
        answered.add(turn.held.call_id)
    entries = list(turn.entries)
    for entry in turn.entries:
        if isinstance(entry, ToolCall) and entry.call_id not in answered:
            entries.append(
                ToolResult(entry.call_id, entry.name, False, {"error": INTERRUPTED, "message": "not finished"})
            )
    typed = [code for e in turn.entries if isinstance(e, UserText) for code in typed_codes(e.text)]
    secrets_ = [*turn.secrets, *typed]
    return ChatTurnRecord(turn.number, tuple(_redact(e, secrets_) for e in entries), stop_reason)


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


class TurnRecorder:
    """Records turns and frees their sessions (waking a turn of this process that waits for the session)."""

    def __init__(
        self, store: ChatSessionStore, leases: SessionLeases, *, limits: ChatLimits, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._leases = leases
        self._limits = limits
        self._clock = clock

    async def commit(self, turn: Turn, stop_reason: str, next_sequence: int) -> None:
        """Record the turn and free its session, once.

        A caller cancelled while the write runs does not stop it: a commit whose outcome is unknown would
        otherwise be written again as an interrupted turn, over the turn it had recorded. A later call waits
        for a write still running (or done) instead of starting another; only a failed write is tried again.
        """
        commit = turn.commit
        if commit is None or (commit.done() and (commit.cancelled() or commit.exception() is not None)):
            commit = turn.commit = asyncio.ensure_future(self._write(turn, stop_reason, next_sequence))
        await asyncio.shield(commit)

    async def record_interrupted(self, turn: Turn) -> None:
        """Record what an interrupted turn did and free the session, in bounded time; never raises."""
        try:
            async with asyncio.timeout(RECORD_AFTER_CANCEL_SECONDS):
                await self.commit(turn, INTERRUPTED, turn.next_sequence)
        except (Exception, asyncio.CancelledError):
            log.warning(
                "interrupted chat turn not recorded; its lease will expire",
                extra={"session": fingerprint(turn.session_id)},
            )

    async def _write(self, turn: Turn, stop_reason: str, next_sequence: int) -> None:
        try:
            kept = await self._store.finish_turn(
                turn.session_id,
                lease_id=turn.lease_id,
                turn=stored_turn(turn, stop_reason),
                next_sequence=next_sequence,
                memory=turn.memory,
                expires_at=self._clock() + self._limits.session_ttl_seconds,
                # A bound session has an owner whose bearer every turn carries, and a sign-in in this turn sets
                # the principal too: the turn knows, the store need not read it.
                bound=turn.principal is not None,
            )
        finally:
            # Whatever the store answered: a woken turn tries the lease and finds out.
            self._leases.freed(turn.session_id, turn.lease_id)
        turn.committed = True
        if not kept:
            log.warning("chat turn outlived its lease; not recorded", extra={"session": fingerprint(turn.session_id)})

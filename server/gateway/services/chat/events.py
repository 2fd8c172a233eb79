"""The chat stream's events, in the gateway's own words, and the coalescer that merges text deltas.

A gRPC message costs the server about 110 µs whatever its size, so text deltas that arrive faster than the
flush interval are merged into one `TextDelta`. The interval widens with the number of open streams (fewer,
larger messages keep every stream within the latency budget). Only text is merged: tool events and the token
delivery go out at once, after any text buffered before them, and are never split or merged.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from gateway.domain import TokenDelivery, Usage


@dataclass(frozen=True)
class SessionStarted:
    """The first event of every turn."""

    session_id: str
    resumed: bool
    authenticated: bool
    guest_id: str


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


class StopReason(enum.Enum):
    """Why a turn ended."""

    END_TURN = "END_TURN"
    MAX_ROUNDS = "MAX_ROUNDS"
    TIMEOUT = "TIMEOUT"
    MODEL_ERROR = "MODEL_ERROR"


@dataclass(frozen=True)
class TurnComplete:
    """The last event of every turn."""

    stop_reason: StopReason
    usage: Usage


ChatEventBody = SessionStarted | TextDelta | ToolCallStarted | ToolCallFinished | TokenDeliveryEvent | TurnComplete


@dataclass(frozen=True)
class ChatEvent:
    """An event with its sequence number, which increases by one with every event of the session."""

    sequence: int
    body: ChatEventBody


class StreamLoad:
    """How many chat streams this process has open (the coalescer widens its interval as this grows)."""

    def __init__(self) -> None:
        self.open = 0

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count one open stream for the duration of the block."""
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1


@dataclass(frozen=True)
class FlushPolicy:
    """When buffered text goes out.

    `interval_seconds` is the flush interval of a lightly loaded server. With `open_streams` streams the
    interval becomes `open_streams / messages_per_second` (so all streams together send about that many text
    messages a second), never less than `interval_seconds` and never more than `latency_budget_seconds`.
    Buffered text of `max_chars` or more goes out at once.
    """

    interval_seconds: float = 0.030
    latency_budget_seconds: float = 0.150
    messages_per_second: float = 5000.0
    max_chars: int = 1024

    def interval(self, open_streams: int) -> float:
        """The flush interval for this many open streams."""
        adaptive = open_streams / self.messages_per_second
        return min(self.latency_budget_seconds, max(self.interval_seconds, adaptive))


class DeltaCoalescer:
    """Merges text deltas that come faster than the flush interval; a state machine driven by a clock value.

    Text that arrives when the last message went out at least one interval ago is sent at once. Otherwise it is
    buffered until one interval after the last message (`due_at`), or until it reaches `max_chars`. Any other
    event first flushes the buffered text, then goes out itself, so the order of everything is kept.
    """

    def __init__(self, policy: FlushPolicy, interval: Callable[[], float]) -> None:
        self._policy = policy
        self._interval = interval
        self._parts: list[str] = []
        self._chars = 0
        self._last_sent: float | None = None
        self._due: float | None = None

    def due_at(self) -> float | None:
        """When the buffered text must go out (clock value), or None when nothing is buffered."""
        return self._due

    def push(self, body: ChatEventBody, now: float) -> list[ChatEventBody]:
        """Take one event; return what should be sent now, in order."""
        if isinstance(body, TextDelta):
            if not body.text:
                return []
            interval = self._interval()
            if not self._parts and (self._last_sent is None or now - self._last_sent >= interval):
                self._last_sent = now
                return [body]
            if not self._parts:
                assert self._last_sent is not None
                self._due = self._last_sent + interval
            self._parts.append(body.text)
            self._chars += len(body.text)
            if self._chars >= self._policy.max_chars:
                return self._flush(now)
            return []
        out = self._flush(now)
        out.append(body)
        self._last_sent = now
        return out

    def flush_due(self, now: float) -> list[ChatEventBody]:
        """The buffered text, if its time has come."""
        if self._due is not None and now >= self._due:
            return self._flush(now)
        return []

    def drain(self, now: float) -> list[ChatEventBody]:
        """Whatever text is still buffered (the stream is ending)."""
        return self._flush(now)

    def _flush(self, now: float) -> list[ChatEventBody]:
        if not self._parts:
            return []
        text = "".join(self._parts)
        self._parts.clear()
        self._chars = 0
        self._due = None
        self._last_sent = now
        return [TextDelta(text)]


class EndOfTurn:
    """Put on a turn's event queue after its last event."""


@dataclass(frozen=True)
class TurnFailed:
    """Put on a turn's event queue when the turn's producer failed; the consumer raises `error`."""

    error: Exception


QueueItem = ChatEventBody | EndOfTurn | TurnFailed


async def coalesced(
    queue: asyncio.Queue[QueueItem], coalescer: DeltaCoalescer, clock: Callable[[], float]
) -> AsyncGenerator[ChatEventBody, None]:
    """Events from `queue` as they should be sent: text merged by `coalescer`, everything else at once.

    Ends after `EndOfTurn`; raises the error of a `TurnFailed`.
    """
    while True:
        due = coalescer.due_at()
        item: QueueItem
        if due is None:
            item = await queue.get()
        else:
            try:
                remaining = due - clock()
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    item = await queue.get()
            except TimeoutError:
                # The timer may fire a clock tick early; it fired because `due` has come.
                for body in coalescer.flush_due(max(clock(), due)):
                    yield body
                continue
        if isinstance(item, EndOfTurn):
            for body in coalescer.drain(clock()):
                yield body
            return
        if isinstance(item, TurnFailed):
            raise item.error
        for body in coalescer.push(item, clock()):
            yield body

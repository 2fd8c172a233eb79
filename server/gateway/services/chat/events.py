"""The chat stream's events, in the gateway's own words, and the coalescer that merges text deltas.

A gRPC message costs the server tens of microseconds whatever its size, so text deltas that arrive faster than
the flush interval are merged into one `TextDelta`. The interval widens with the number of open streams (fewer,
larger messages keep every stream within the latency budget). Only text is merged: tool events and the token
delivery go out at once, after any text buffered before them, and are never split or merged.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

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
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count one open stream for the duration of the block."""
        self.open += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.open -= 1
            if not self.open:
                self._idle.set()

    async def idle(self) -> None:
        """Return once no stream is open (at once if none is)."""
        await self._idle.wait()


@dataclass(frozen=True)
class FlushPolicy:
    """When buffered text goes out.

    `interval_seconds` is the flush interval of a lightly loaded server. With `open_streams` streams the
    interval becomes `open_streams / messages_per_second` (so all streams together send about that many text
    messages a second), never less than `interval_seconds` and never more than `latency_budget_seconds`.
    Buffered text of `max_chars` or more goes out at once.
    """

    interval_seconds: float = 0.030
    latency_budget_seconds: float = 0.080
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
            if not self._parts:
                interval = self._interval()
                if self._last_sent is None or now - self._last_sent >= interval:
                    self._last_sent = now
                    return [body]
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

    def max_chars_left(self) -> int:
        """How many more characters of text may be held before it goes out at once."""
        return self._policy.max_chars - self._chars

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
    """Put in a turn's outbox after its last event."""


@dataclass(frozen=True)
class TurnFailed:
    """Put in a turn's outbox when the turn's producer failed; the consumer raises `error`."""

    error: Exception


OutboxItem = ChatEventBody | EndOfTurn | TurnFailed


class TurnOutbox:
    """Hands a turn's events from its producer task to the call's consumer, waking the consumer once a message.

    The producer `put`s every event without waiting. The consumer (`events`) takes everything that has arrived,
    merges runs of text, passes them through the coalescer and sends what it says is due. Then it sleeps until
    something must go out: while text is held for its flush time, more text only wakes it once the held text
    reaches `max_chars`; any other event wakes it at once, and a timer wakes it when the held text is due. So a
    fast model costs the consumer one wake-up per message rather than per token, and no timer per token.
    """

    def __init__(self, coalescer: DeltaCoalescer, clock: Callable[[], float]) -> None:
        self._coalescer = coalescer
        self._clock = clock
        self._items: deque[OutboxItem] = deque()
        self._waiter: asyncio.Future[bool] | None = None
        self._text_wakes = True
        self._chars_left = 0

    def put(self, item: OutboxItem) -> None:
        """Add the producer's next event; wake the consumer only if it must act on it now."""
        self._items.append(item)
        waiter = self._waiter
        if waiter is None:
            return
        if not self._text_wakes and type(item) is TextDelta:
            self._chars_left -= len(item.text)
            if self._chars_left > 0:
                return
        self._waiter = None
        if not waiter.done():
            waiter.set_result(False)

    async def events(self) -> AsyncGenerator[ChatEventBody, None]:
        """The events as they should be sent. Ends after `EndOfTurn`; raises the error of a `TurnFailed`."""
        coalescer = self._coalescer
        clock = self._clock
        items = self._items
        reached: float | None = None  # the flush time a timer fired for
        while True:
            while items:
                item = items.popleft()
                if type(item) is TextDelta:
                    # A run of text that arrived together is one push (and, if sent at once, one message).
                    parts = [item.text]
                    while items and type(items[0]) is TextDelta:
                        parts.append(cast(TextDelta, items.popleft()).text)
                    item = TextDelta("".join(parts)) if len(parts) > 1 else item
                elif isinstance(item, EndOfTurn):
                    for body in coalescer.drain(clock()):
                        yield body
                    return
                elif isinstance(item, TurnFailed):
                    raise item.error
                for body in coalescer.push(item, clock()):
                    yield body
            due = coalescer.due_at()
            if due is not None and (clock() >= due or (reached is not None and due <= reached)):
                # The timer may fire a clock tick early; it fired because `due` has come.
                for body in coalescer.flush_due(max(clock(), due)):
                    yield body
                reached = None
                continue
            reached = None
            if not items and await self._wait(due, coalescer.max_chars_left()):
                reached = due

    async def _wait(self, due: float | None, chars_left: int) -> bool:
        """Sleep until an event must be acted on (False) or until `due` (True)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        self._text_wakes = due is None
        self._chars_left = chars_left
        timer = loop.call_at(due, _fire, waiter) if due is not None else None
        try:
            return await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _fire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)

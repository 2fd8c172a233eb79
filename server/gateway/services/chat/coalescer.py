"""The delta coalescer: merges text deltas that come faster than the flush interval, and what sets the interval.

A gRPC message costs the server tens of microseconds whatever its size, so text deltas that arrive faster than
the flush interval are merged into one `TextDelta`. The interval widens with the number of open streams (fewer,
larger messages keep every stream within the latency budget). Only text is merged: tool events and the token
delivery go out at once, after any text buffered before them, and are never split or merged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gateway.services.chat.events import ChatEventBody, TextDelta


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

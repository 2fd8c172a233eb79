"""The turn's outbox: hands a turn's events from its producer task to the call's stream, through the coalescer."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import cast

from gateway.services.chat.coalescer import DeltaCoalescer
from gateway.services.chat.events import ChatEventBody, TextDelta


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

"""The text every benchmark server streams: the same tokens, produced the same way, whatever the transport.

- `fast_tokens`: a model writing as fast as it can. Each token is handed over with one pass of the event loop
  (as a real upstream's bytes arrive through the loop), so the transport gets to send between tokens.
- `paced_tokens`: a model writing `rate` tokens a second, like a real LLM. Token i is due at t0 + i/rate; a
  token that is late (the loop was busy) is handed over at once. Each token is its due time in microseconds of
  CLOCK_MONOTONIC modulo 10^9 (nine digits and a space), so the client, in another process on the same
  machine, measures each token's delivery latency from when the model meant to produce it, busy loop included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

# English-like tokens with their leading space, 5.4 characters on average (an LLM's tokens are about 4).
WORDS = (
    " The",
    " harbor",
    " loft",
    " is",
    " free",
    " from",
    " March",
    " 15",
    " to",
    " 20,",
    " and",
    " the",
    " price",
    " for",
    " two",
    " guests",
    " comes",
    " to",
    " 840",
    " euros",
    " in",
    " total.",
    " Would",
    " you",
    " like",
    " me",
    " to",
    " book",
    " it",
    " for",
    " you?",
)
STAMP_MODULUS_US = 10**9


def word(index: int) -> str:
    """The `index`-th token of the fast text."""
    return WORDS[index % len(WORDS)]


def fast_text_chars(count: int) -> int:
    """Characters in the first `count` tokens of the fast text."""
    whole, rest = divmod(count, len(WORDS))
    return whole * sum(len(w) for w in WORDS) + sum(len(w) for w in WORDS[:rest])


async def fast_tokens(count: int) -> AsyncGenerator[str, None]:
    """`count` tokens as fast as the loop allows, one loop pass each."""
    for index in range(count):
        yield WORDS[index % len(WORDS)]
        await asyncio.sleep(0)


def stamp(monotonic_seconds: float) -> str:
    """A token carrying a CLOCK_MONOTONIC time."""
    return f"{int(monotonic_seconds * 1_000_000) % STAMP_MODULUS_US:09d} "


def stamp_latencies_ms(text: str, received_at: float) -> list[float]:
    """For each stamped token in `text`, milliseconds from its due time to `received_at` (CLOCK_MONOTONIC)."""
    now_us = int(received_at * 1_000_000) % STAMP_MODULUS_US
    half = STAMP_MODULUS_US // 2
    latencies: list[float] = []
    for token in text.split():
        if token.isdigit():
            # Modular difference, centred on zero, so the wrap every 1,000 s does not matter.
            latencies.append(((now_us - int(token) + half) % STAMP_MODULUS_US - half) / 1000)
    return latencies


async def paced_tokens(count: int, rate: float) -> AsyncGenerator[str, None]:
    """`count` stamped tokens at `rate` tokens a second from now."""
    start = time.monotonic()
    for index in range(count):
        due = start + index / rate
        delay = due - time.monotonic()
        await asyncio.sleep(delay if delay > 0 else 0)
        yield stamp(due)


@dataclass(frozen=True)
class TurnSpec:
    """What a benchmark turn asks the server's model for, carried as the chat message itself.

    `rate` 0 means as fast as possible (`fast_tokens`), otherwise `paced_tokens`. `tag` names the turn in the
    server's report (cancellation trials).
    """

    tokens: int
    rate: float = 0.0
    tag: str = ""

    def message(self) -> str:
        """The chat message that asks for this turn.

        The count is written with `_` between thousands: a run of 6 to 8 digits standing alone reads as a one-time
        code, which the chat redacts before the model sees it.
        """
        return f"bench {self.tokens:_} {self.rate:g} {self.tag}".rstrip()

    @classmethod
    def parse(cls, message: str) -> TurnSpec:
        """The turn a message asks for; a message that is not a benchmark turn asks for 20 fast tokens."""
        parts = message.split()
        if len(parts) < 3 or parts[0] != "bench":
            return cls(20)
        return cls(int(parts[1]), float(parts[2]), parts[3] if len(parts) > 3 else "")

    def tokens_iter(self) -> AsyncGenerator[str, None]:
        """The tokens of this turn, fast or paced."""
        return paced_tokens(self.tokens, self.rate) if self.rate > 0 else fast_tokens(self.tokens)

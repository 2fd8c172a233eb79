"""What the client keeps of a keep_running turn to resume it, and when a failed stream is worth resuming."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from grpc import aio

# A stream that ends with one of these has not ended the turn: the connection dropped, the deadline passed, or
# the replica went away (UNAVAILABLE / SHUTTING_DOWN). The turn goes on in the gateway; ResumeChat picks it up.
RESUMABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})


def resumable(error: aio.AioRpcError) -> bool:
    """Whether a failed Chat or ResumeChat stream should be resumed (not an error of the request itself)."""
    return error.code() in RESUMABLE_CODES


@dataclass
class TurnCursor:
    """A turn being read: its session, its resume token (keep_running only), the last sequence seen, done, and
    whether a CancelTurn for it is under way or got through (`cancelling`)."""

    session_id: str = ""
    resume_token: str = ""
    last_sequence: int = 0
    done: bool = False
    cancelling: bool = False

    @property
    def resumable(self) -> bool:
        """Whether the turn can be resumed: it is kept and has not ended."""
        return bool(self.resume_token) and not self.done


@dataclass(frozen=True)
class ResumeBackoff:
    """Delays before each resume attempt: `first_seconds` doubling to `max_seconds`, each drawn from the upper
    half of its step (never zero, never in step with other clients); `attempts` tries without progress."""

    first_seconds: float = 0.2
    max_seconds: float = 5.0
    attempts: int = 8

    def delays(self, rng: random.Random) -> Iterator[float]:
        """One delay per attempt, `attempts` of them."""
        step = self.first_seconds
        for _ in range(self.attempts):
            yield rng.uniform(step / 2, step)
            step = min(step * 2, self.max_seconds)

"""Per-client bounds on chat: turns and new sessions per address, turns per guest, model tokens a day.

What a stranger with only an address can make the gateway spend is bounded here, in turns (each a model call),
sessions (each a table item) and model tokens (the bill). Everything is counted in the table (the `RateLimiter`
and `BudgetCounter` ports), so the bounds hold across replicas. A turn is admitted before it creates or takes
its session: a refused turn writes no session, turn or lease, and never reaches the model. Token budgets are
checked before the turn (refused once already spent) and charged after it with what the model reported, so a
budget is overshot by at most the turns that were running when it ran out.

These limits live in the chat service rather than in the transport's `CallLimit` hook because they need the
turn's facts: whether the caller is signed in (whose limit), whether the turn opens a new session, and the
tokens the model used, which only exist once the turn is over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from gateway.domain import RateGrant, RateLimit, Usage
from gateway.errors import RateLimitedError, TokenBudgetExhaustedError
from gateway.ports import BudgetCounter, BudgetUse, RateLimiter
from gateway.services.chat.turn import ChatTurnRequest
from gateway.services.login import peer_subject

log = logging.getLogger(__name__)

# The gateway-wide budget is one subject: every turn of every client charges it.
GATEWAY_SUBJECT = "gateway"
# Charging after a turn whose client went away may take this long; then the tokens go uncounted (and logged).
CHARGE_SECONDS = 2.0


_BUDGET_SPENT = {
    "client": "your chat has used up today's model tokens; retry after the delay given",
    "gateway": "the chat has used up today's model tokens for everybody; retry after the delay given",
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ChatQuota:
    """The numbers: events per window for the turn and session limits, tokens per window for the budgets."""

    anonymous_turns: RateLimit = field(default_factory=lambda: RateLimit("chat-turns-anon", 20, 60.0))
    anonymous_sessions: RateLimit = field(default_factory=lambda: RateLimit("chat-sessions-anon", 10, 3600.0))
    guest_turns: RateLimit = field(default_factory=lambda: RateLimit("chat-turns-guest", 60, 60.0))
    client_tokens: RateLimit = field(default_factory=lambda: RateLimit("chat-tokens-client", 200_000, 86400.0))
    gateway_tokens: RateLimit = field(default_factory=lambda: RateLimit("chat-tokens-gateway", 20_000_000, 86400.0))


class ChatCounters(RateLimiter, BudgetCounter, Protocol):
    """The counters the chat limits need: rate windows and token budgets (one adapter implements both)."""


@dataclass(frozen=True)
class Admission:
    """A turn let in: who its tokens are charged to."""

    client: str


def client_subject(request: ChatTurnRequest) -> str:
    """Whom a turn counts against: the signed-in person, else the client address (an IPv6 /64)."""
    if request.principal is not None:
        return f"sub:{request.principal.sub}"
    return f"address:{peer_subject(request.client)}"


class ChatAdmission:
    """Lets a turn in or refuses it (RESOURCE_EXHAUSTED), and charges an admitted turn's tokens afterwards."""

    def __init__(
        self, counters: ChatCounters, quota: ChatQuota | None = None, *, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self._counters = counters
        self._quota = quota or ChatQuota()
        self._clock = clock

    async def admit(self, request: ChatTurnRequest) -> Admission:
        """Count the turn (and the new session of an anonymous caller) and check the token budgets.

        Raises `TokenBudgetExhaustedError` (the client's or the gateway's budget is spent), `RateLimitedError`
        (too many turns or new sessions), both with `retry_after_seconds`; `UpstreamUnavailableError`. A refused
        turn counts nothing against the limits it did not pass.
        """
        quota, now = self._quota, self._clock()
        subject = client_subject(request)
        # Budgets first: they are only read (both in one request), so a turn refused for its budget uses up no turn
        # of the rate limits. The gateway's is named first when both are spent.
        gateway_use, client_use = await self._counters.spent_each(
            [(quota.gateway_tokens, GATEWAY_SUBJECT), (quota.client_tokens, subject)], now
        )
        self._check_budget(quota.gateway_tokens, gateway_use, "gateway", now)
        self._check_budget(quota.client_tokens, client_use, "client", now)
        if request.principal is not None:
            await self._acquire(quota.guest_turns, subject, "turns", now)
            return Admission(subject)
        grant = await self._acquire(quota.anonymous_turns, subject, "turns", now)
        if not request.session_id:
            try:
                await self._acquire(quota.anonymous_sessions, subject, "sessions", now)
            except BaseException:
                await self._counters.release(grant)
                raise
        return Admission(subject)

    async def charge(self, admission: Admission, usage: Usage) -> None:
        """Add the tokens a turn used to its client's and the gateway's budgets, in bounded time; never raises."""
        amount = usage.input_tokens + usage.output_tokens
        if amount <= 0:
            return
        quota, now = self._quota, self._clock()
        try:
            async with asyncio.timeout(CHARGE_SECONDS):
                await asyncio.gather(
                    self._counters.charge(quota.client_tokens, admission.client, amount, now),
                    self._counters.charge(quota.gateway_tokens, GATEWAY_SUBJECT, amount, now),
                )
        except (Exception, asyncio.CancelledError) as exc:
            log.warning("chat tokens not charged", extra={"tokens": amount, "error": type(exc).__name__})

    @staticmethod
    def _check_budget(budget: RateLimit, use: BudgetUse, which: str, now: datetime) -> None:
        if use.spent >= budget.limit:
            raise TokenBudgetExhaustedError(
                _BUDGET_SPENT[which],
                metadata={"budget": which},
                retry_after_seconds=max(round((use.resets_at - now).total_seconds()), 1),
            )

    async def _acquire(self, limit: RateLimit, subject: str, what: str, now: datetime) -> RateGrant:
        try:
            return await self._counters.acquire(limit, subject, now)
        except RateLimitedError as exc:
            raise RateLimitedError(
                f"too many chat {'messages' if what == 'turns' else 'new sessions'} from this client; retry later",
                metadata={"limit": limit.name},
                retry_after_seconds=exc.retry_after_seconds,
            ) from exc

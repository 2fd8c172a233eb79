"""The session's turn lease: one turn of a session at a time on any replica, and how a second turn waits for it.

The lease is a conditional write on the session item (`ChatSessionStore.acquire`): taken when free or expired,
and only while the session's owner is still the one this turn was checked against. A turn that finds it taken
waits on something that tells it the lease may be free now:
- held by a turn of this process: the wake-up that turn sends when it frees the session (`freed`), so the next
  turn starts as soon as the first has recorded itself, without polling;
- held by another replica (nothing here can tell when it ends): the conditional write again, after a delay
  that doubles from `ChatLimits.lease_retry_first_seconds` up to `lease_retry_max_seconds`, each drawn at random
  from its upper half so that turns waiting on several replicas do not retry in step.
A wake-up also ends a backoff delay early, and a turn of this process that never wakes its waiters (stuck in a
store call) holds them only until its lease runs out. The wait has no clock of its own: it ends when the lease
is taken or when the call is cancelled (its deadline passed, or the client went away), as a lease held by a
live turn ends within that turn's time bound and a crashed replica's lease expires `lease_margin_seconds` later.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gateway.domain import Principal
from gateway.errors import SessionNotFoundError, SessionNotOwnedError, TokenMissingError
from gateway.ports import ChatSessionRecord, ChatSessionStore
from gateway.redact import fingerprint
from gateway.services.chat.turn import ChatLimits, ChatTurnRequest

log = logging.getLogger(__name__)

# How long freeing a session (recording an interrupted turn, or dropping the lease of a turn that never began)
# may take after the client has gone.
RECORD_AFTER_CANCEL_SECONDS = 2.0


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts at a lease another replica holds: `first_seconds` doubling to `max_seconds`.

    Each delay is drawn uniformly from the upper half of its step (`[d/2, d]`): never zero, never in step with
    another waiter, and never longer than `max_seconds`.
    """

    first_seconds: float = 0.020
    max_seconds: float = 1.0

    def delays(self, rng: random.Random) -> Iterator[float]:
        """The delays, one per refused attempt, without end."""
        step = min(self.first_seconds, self.max_seconds)
        while True:
            yield rng.uniform(step / 2, step)
            step = min(step * 2, self.max_seconds)


@dataclass(frozen=True)
class Lease:
    """A session held by one turn: the session as it was when taken."""

    session: ChatSessionRecord
    lease_id: str
    resumed: bool


def check_owner(record: ChatSessionRecord, principal: Principal | None) -> None:
    """Refuse a caller who may not use the session: a bound session needs its owner's bearer."""
    if record.owner_sub is None:
        return
    if principal is None:
        raise TokenMissingError('this chat belongs to a signed-in person: send "authorization: Bearer <access token>"')
    if principal.sub != record.owner_sub:
        raise SessionNotOwnedError("this chat belongs to somebody else; start a new chat")


class SessionLeases:
    """Takes and frees sessions' turn leases for the turns of this process, and wakes the turns waiting for them.

    Every turn that takes a lease here must hand it back through `freed` (after the store released it, or
    tried to) or `release` (a turn that never began), so that a turn of this process waiting for the session
    is woken.
    """

    def __init__(
        self,
        store: ChatSessionStore,
        *,
        limits: ChatLimits,
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._limits = limits
        self._clock = clock
        self._backoff = Backoff(limits.lease_retry_first_seconds, limits.lease_retry_max_seconds)
        self._rng = rng or random.Random()
        # Session id -> lease id of the turn of this process that holds the session.
        self._held: dict[str, str] = {}
        # Session id -> the turns of this process waiting for it.
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def waiting(self, session_id: str) -> int:
        """How many turns of this process wait for the session's lease."""
        return len(self._waiters.get(session_id, ()))

    async def take(self, request: ChatTurnRequest, lease_seconds: float) -> Lease:
        """The request's session, held for `lease_seconds` from each attempt; a new session when it names none.

        Raises `SessionNotFoundError` for an unknown or expired session, and `TokenMissingError` /
        `SessionNotOwnedError` when the caller may not use it (checked again at every attempt: someone may
        sign in inside the session while this turn waits).
        """
        lease_id = secrets.token_hex(8)
        if not request.session_id:
            now = self._clock()
            record = await self._store.create(
                secrets.token_urlsafe(16),
                lease_id=lease_id,
                lease_until=now + lease_seconds,
                expires_at=now + self._limits.session_ttl_seconds,
            )
            self._held[record.session_id] = lease_id
            return Lease(record, lease_id, resumed=False)
        session_id = request.session_id
        delays = self._backoff.delays(self._rng)
        while True:
            found = await self._store.get(session_id)
            if found is None:
                raise SessionNotFoundError("no such chat session (it may have expired); start a new one")
            check_owner(found, request.principal)
            now = self._clock()
            # Enlisted before the store is asked: a turn of this process that frees the session while the
            # question is in flight wakes this one, so the refusal below can never miss its wake-up (the store
            # decides at one moment, this coroutine reads `_held` at a later one).
            waiter = self._enlist(session_id)
            try:
                held = await self._store.acquire(
                    session_id, owner_sub=found.owner_sub, lease_id=lease_id, lease_until=now + lease_seconds, now=now
                )
                if held is not None:
                    self._held[session_id] = lease_id
                    return Lease(held, lease_id, resumed=True)
                if session_id in self._held:
                    # Woken when that turn frees the session; at the latest when its lease runs out, should one
                    # of its store calls hang.
                    delay = max(found.lease_until - now, 0.0) if found.lease_id is not None else lease_seconds
                else:
                    # Held by another replica (or freed here already, and then the waiter is woken): poll.
                    delay = next(delays)
                await self._wait(waiter, delay)
            finally:
                self._delist(session_id, waiter)

    def freed(self, session_id: str, lease_id: str) -> None:
        """The turn holding `lease_id` has freed the session in the store (or tried to): wake the turns waiting.

        Called also when the store's answer is unknown or a failure: a woken turn tries the conditional write
        again, and waits for the replica's backoff if the lease is in fact still held.
        """
        if self._held.get(session_id) == lease_id:
            del self._held[session_id]
        for waiter in self._waiters.pop(session_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def release(self, session_id: str, lease_id: str) -> None:
        """Give the lease back without recording a turn (it never began), in bounded time; never raises."""
        try:
            async with asyncio.timeout(RECORD_AFTER_CANCEL_SECONDS):
                await self._store.release(session_id, lease_id=lease_id)
        except Exception:
            log.warning("chat session lease not released; it will expire", extra={"session": fingerprint(session_id)})
        finally:
            self.freed(session_id, lease_id)

    def _enlist(self, session_id: str) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(session_id, set()).add(waiter)
        return waiter

    def _delist(self, session_id: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(session_id)
        if waiters is None:
            return
        waiters.discard(waiter)
        if not waiters:
            del self._waiters[session_id]

    async def _wait(self, waiter: asyncio.Future[None], delay: float) -> None:
        """Until the session is freed by a turn of this process (at once if it was already), or `delay` seconds."""
        timer = asyncio.get_running_loop().call_later(delay, _fire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()


def _fire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

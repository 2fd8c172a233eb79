"""Ports: the small interfaces the services need, shaped by the services, implemented by adapters."""

from __future__ import annotations

import datetime
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.domain import (
    ApprovalDecision,
    ConversationEntry,
    GuestId,
    GuestProfile,
    IssuedTokens,
    JsonObject,
    LoginDoor,
    LoginState,
    ModelOutput,
    OtpChallenge,
    PendingAction,
    Principal,
    Property,
    RateGrant,
    RateLimit,
    Reservation,
    ReservationId,
    ReservationPage,
    Sub,
    ToolSpec,
    TurnFacts,
)


class BearerVerifier(Protocol):
    """Turns a bearer access token into a verified principal."""

    def verified(self, token: str) -> Principal | None:
        """The principal of a token verified before and remembered, still unexpired and not revoked; None when it
        must be verified (`verify`). Raises TokenExpiredError / TokenRevokedError as `verify` would. Never awaits."""
        ...

    async def verify(self, token: str) -> Principal:
        """Verify `token` and return its principal.

        Raises an `AuthenticationError` subclass (TOKEN_*) when the token is not acceptable, and
        `JwksUnavailableError` when the keys needed to judge it cannot be fetched. Never logs the token.
        """
        ...


class ReservationStore(Protocol):
    """Properties, night locks and reservations. Every method raises `UpstreamUnavailableError` (with a retry
    delay) when the store is throttling or unreachable."""

    async def list_properties(self) -> list[Property]:
        """Every bookable property, in no particular order."""
        ...

    async def get_property(self, property_id: str) -> Property | None:
        """The property, or None when there is no such property."""
        ...

    async def held_nights(self, property_id: str, nights: Sequence[datetime.date]) -> frozenset[datetime.date]:
        """Which of `nights` (consecutive, in order) are held by a confirmed reservation (a consistent read)."""
        ...

    async def reserve_nights(self, reservation: Reservation, *, request_id: str) -> Reservation:
        """Store `reservation` and hold each of its nights, all or nothing, under the owner's `request_id`.

        Returns the stored reservation: `reservation` itself, or, when the owner already used `request_id`, the
        reservation booked then (nothing is written; the caller compares the content). Raises `NightsTakenError`
        listing the nights someone else holds, and writes nothing then. An outcome the store cannot observe (a
        timeout, a dropped connection) is resolved by reading back by `request_id`, never guessed.
        """
        ...

    async def get_reservation(self, owner: Sub, reservation_id: ReservationId) -> Reservation | None:
        """The owner's reservation (a consistent read), or None; another owner's reservation is never returned."""
        ...

    async def list_reservations(self, owner: Sub, *, page_size: int, page_token: str) -> ReservationPage:
        """One page of the owner's reservations, newest first. `page_token` is "" or a token this method returned
        for the same owner; any other token raises `InvalidArgumentError` on field "page_token"."""
        ...

    async def release_nights(self, reservation: Reservation, *, cancelled_at: datetime.datetime) -> Reservation:
        """Mark a confirmed reservation cancelled and free its nights in one transaction; return it as stored.

        Releasing an already cancelled reservation changes nothing and returns it.
        """


class KeySource(Protocol):
    """Where the token signing keys come from (the user pool's JWKS)."""

    async def fetch_keys(self) -> dict[str, Any]:
        """Fetch the current signing keys as {kid: public key}.

        Only RSA signature keys for RS256 are returned. Raises `JwksUnavailableError` when the keys cannot be
        fetched or the answer is not a valid JWKS.
        """
        ...


@dataclass(frozen=True)
class Revocation:
    """A signed-out token family: refused until `expires_at` (epoch seconds), recorded at `revoked_at`."""

    token_family: str
    revoked_at: float
    expires_at: float


class RevocationStore(Protocol):
    """Shared record of signed-out token families, visible to every replica."""

    async def add(self, revocation: Revocation) -> None:
        """Record a revocation. Raises `UpstreamUnavailableError` when the store cannot be reached."""
        ...

    async def revoked_since(self, since: float) -> list[Revocation]:
        """Revocations recorded at or after `since` (epoch seconds) that have not expired yet."""
        ...


@dataclass(frozen=True)
class RefreshTokenOwner:
    """Whose sign-in a refresh token the gateway delivered belongs to: the person and the token family."""

    sub: str
    token_family: str


class RefreshTokenStore(Protocol):
    """What the gateway keeps to recognise the refresh tokens it delivered: a keyed digest, never the token."""

    async def remember(self, refresh_token: str, owner: RefreshTokenOwner, expires_at: float) -> None:
        """Note that `refresh_token` belongs to `owner` until `expires_at` (epoch seconds).

        Raises `UpstreamUnavailableError`.
        """
        ...

    async def owner_of(self, refresh_token: str) -> RefreshTokenOwner | None:
        """The owner of a refresh token the gateway delivered, or None for any other value.

        Raises `UpstreamUnavailableError`.
        """
        ...


@dataclass(frozen=True)
class UserAccount:
    """A user at the identity provider, and whether this call created it."""

    sub: Sub
    created: bool


class IdentityProvider(Protocol):
    """Passwordless sign-in at the identity provider (Cognito): users, email codes, tokens.

    Implementations translate the provider's failures: unreachable, throttling or timing out raises
    `UpstreamUnavailableError`. They never log tokens, codes, sessions or full email addresses.
    """

    async def ensure_user(self, email: str) -> UserAccount:
        """The user with this (normalised) email, created if there is none.

        Creating sends no message. Raises `UpstreamUnavailableError`.
        """
        ...

    async def send_code(self, email: str) -> OtpChallenge:
        """Email a fresh one-time code to the user; every call sends a new code bound to a new session.

        An account that cannot sign in with an email code gets a challenge with no session and no code sent.
        Raises `UpstreamUnavailableError`.
        """
        ...

    async def check_code(self, email: str, session: str, code: str) -> IssuedTokens:
        """Answer the session's challenge with `code`; tokens when it is right.

        Raises `OtpInvalidError` for a wrong code (the session stays usable), `OtpExpiredError` when the
        session is expired or used, `UpstreamUnavailableError`.
        """
        ...

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        """New ID and access tokens (and a new refresh token when the provider rotates them).

        Raises `TokenInvalidError` for an invalid or revoked refresh token, `UpstreamUnavailableError`.
        """
        ...

    async def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token and the tokens issued from it. An unknown token is not an error.

        Raises `TokenInvalidError` when the provider refuses the token, `UpstreamUnavailableError`.
        """
        ...


class LoginStore(Protocol):
    """Logins in progress, shared by every replica. Never logs sessions or login keys."""

    async def save(self, state: LoginState) -> None:
        """Store `state` under its key as the latest login for its email; earlier logins for it stop working.

        Raises `UpstreamUnavailableError`.
        """
        ...

    async def spend_attempt(self, login_key: str, now: datetime.datetime, door: LoginDoor = "unary") -> LoginState:
        """Count one code attempt, atomically, and return the login with the attempt counted.

        Two concurrent calls can never both spend the last attempt. Raises `LoginNotFoundError` (unknown,
        finished, superseded, or started through the other door), `OtpAttemptsExhaustedError`,
        `OtpExpiredError`, `UpstreamUnavailableError`; nothing is counted then.
        """
        ...

    async def is_pending(self, login_key: str, now: datetime.datetime, door: LoginDoor = "unary") -> bool:
        """True while a login started through `door` waits for its code under `login_key` (code not expired).

        Raises `UpstreamUnavailableError`.
        """
        ...

    async def refund_attempt(self, state: LoginState) -> None:
        """Give back one attempt that `spend_attempt` counted for `state` but whose code was never judged.

        Atomic and at most once per call (a re-sent request does not give back twice), never below zero, and only
        while `state` is still the latest login for its email. Best effort: never raises; when it cannot be
        done the attempt stays spent.
        """
        ...

    async def finish(self, state: LoginState) -> None:
        """Forget a login that succeeded, so its code cannot be used again. Raises `UpstreamUnavailableError`."""
        ...


class RateLimiter(Protocol):
    """Counters shared by every replica."""

    async def acquire(self, limit: RateLimit, subject: str, now: datetime.datetime) -> RateGrant:
        """Count one event for `subject` under `limit`.

        Raises `RateLimitedError` with `retry_after_seconds` when the subject is over the limit (nothing is
        counted then), `UpstreamUnavailableError`.
        """
        ...

    async def release(self, grant: RateGrant) -> None:
        """Give back a counted event whose work could not be done. Best effort: never raises."""
        ...


@dataclass(frozen=True)
class BudgetUse:
    """How much of a budget a subject has spent in the current window, and when that window ends."""

    spent: int
    resets_at: datetime.datetime


class BudgetCounter(Protocol):
    """Amounts (model tokens) spent per subject in fixed windows of a budget, shared by every replica.

    A budget is a `RateLimit` whose `limit` is an amount rather than a number of events; its windows are fixed
    (aligned to the epoch, so a day's window is a UTC day). Both methods raise `UpstreamUnavailableError`.
    """

    async def spent(self, budget: RateLimit, subject: str, now: datetime.datetime) -> BudgetUse:
        """What `subject` has spent of `budget` in the window holding `now` (0 when nothing yet)."""
        ...

    async def spent_each(self, budgets: Sequence[tuple[RateLimit, str]], now: datetime.datetime) -> list[BudgetUse]:
        """`spent` of several (budget, subject) pairs, in their order, read together."""
        ...

    async def charge(self, budget: RateLimit, subject: str, amount: int, now: datetime.datetime) -> None:
        """Add `amount` to what `subject` spent in the window holding `now` (one atomic add, never refused)."""
        ...


class GuestLookup(Protocol):
    """Reads guest profiles (what services other than sign-in need)."""

    async def get(self, sub: Sub) -> GuestProfile | None:
        """The guest profile of `sub`, or None when there is none. Raises `UpstreamUnavailableError`."""
        ...


class GuestStore(GuestLookup, Protocol):
    """Guest profiles, keyed by the Cognito subject."""

    async def get_or_create(self, sub: Sub, email: str, name: str, now: datetime.datetime) -> GuestProfile:
        """The guest profile of `sub`, created with a fresh guest id if there is none.

        Safe under concurrency: two replicas creating the same profile end with one. Raises
        `UpstreamUnavailableError`.
        """
        ...


class AgentModel(Protocol):
    """A language model that writes one round of the agent's turn: reply text and, perhaps, tool calls."""

    def run_round(
        self,
        conversation: Sequence[ConversationEntry],
        tools: Sequence[ToolSpec],
        facts: TurnFacts,
        memory: JsonObject,
    ) -> AsyncGenerator[ModelOutput, None]:
        """Stream one round: `TextChunk`s and `ToolCall`s as they come, then exactly one `RoundEnd`.

        `conversation` ends with the person's message or with the results of the tools the model asked for in
        the previous round. `memory` is the model's own notes, kept with the chat session; the model may change
        it in place. Closing the iterator early (cancellation) closes any upstream stream at once. Raises
        `UpstreamUnavailableError` when the model service is unreachable, throttling or failing.
        """
        ...


@dataclass(frozen=True)
class ChatSessionRecord:
    """A stored chat session.

    `owner_sub` is set once somebody signed in inside it; from then on only that person may continue it.
    `next_sequence` is the sequence number of the session's next event; `turn_count` numbers the next turn.
    `memory` is the agent model's notes (JSON). A turn in progress holds the lease (`lease_id` until
    `lease_until`, epoch seconds) so that turns of one session never overlap, whichever replica runs them.
    """

    session_id: str
    owner_sub: Sub | None
    guest_id: GuestId | None
    next_sequence: int
    turn_count: int
    memory: JsonObject
    lease_id: str | None
    lease_until: float
    # The lease of a keep_running turn whose events are kept (`ChatEventJournal`); cleared when it is recorded.
    kept_lease: str | None = None


@dataclass(frozen=True)
class ChatTurnRecord:
    """One finished (or interrupted) turn of a session: what was said and which tools ran."""

    number: int
    entries: tuple[ConversationEntry, ...]
    stop_reason: str


class ChatSessionStore(Protocol):
    """Chat sessions and their history, shared by every replica, forgotten after a time to live.

    The time to live asked for (`expires_at`) is an upper bound: a store may forget a session nobody is bound to
    sooner (the DynamoDB store keeps it `anonymous_ttl_seconds` after its last turn).

    Every method raises `UpstreamUnavailableError` when the store cannot be reached.
    """

    async def create(
        self, session_id: str, *, lease_id: str, lease_until: float, expires_at: float
    ) -> ChatSessionRecord:
        """Create an empty session whose first turn already holds the lease."""
        ...

    async def get(self, session_id: str) -> ChatSessionRecord | None:
        """The session, or None when it is unknown or expired."""
        ...

    async def acquire(
        self, session_id: str, *, owner_sub: Sub | None, lease_id: str, lease_until: float, now: float
    ) -> ChatSessionRecord | None:
        """Take the session's turn lease if it is free (or expired) and the owner is still `owner_sub`.

        Returns the session as it is now held, or None when another turn holds the lease or the owner changed.
        Raises `SessionNotFoundError` when the session is gone.
        """
        ...

    async def recent_turns(self, session_id: str, *, before: int, limit: int, now: float) -> list[ChatTurnRecord]:
        """The last `limit` unexpired turns numbered below `before`, oldest first."""
        ...

    async def finish_turn(
        self,
        session_id: str,
        *,
        lease_id: str,
        turn: ChatTurnRecord,
        next_sequence: int,
        memory: JsonObject,
        expires_at: float,
        bound: bool | None = None,
    ) -> bool:
        """Record the turn and release the lease, if this turn still holds it; False when it does not.

        The session item is the commit point: a turn item written without it is never read back. `bound` says
        whether the session belongs to a signed-in person (it then keeps `expires_at`; else the shorter anonymous
        expiry); None leaves the store to find out.
        """
        ...

    async def release(self, session_id: str, *, lease_id: str) -> None:
        """Give the lease back without recording a turn (the turn failed before it began)."""
        ...

    async def bind_owner(self, session_id: str, *, sub: Sub, guest_id: GuestId | None) -> None:
        """Bind the session to the person `sub` (idempotent for the same person).

        A conditional write: raises `SessionNotOwnedError` when it is bound to somebody else, so that two
        replicas can never bind one session to two people.
        """
        ...


@dataclass(frozen=True)
class KeptEvent:
    """One kept chat event: its sequence and its body as JSON (`services/chat/journal.py` encodes it)."""

    sequence: int
    body: JsonObject


@dataclass(frozen=True)
class SealedDelivery:
    """A kept TokenDelivery, sealed with a key only the turn's resume token gives; kept until `sealed_until`."""

    sequence: int
    sealed: bytes = field(repr=False)
    sealed_until: float


@dataclass(frozen=True)
class KeptSession:
    """What a follower needs to know of the session while it reads kept events."""

    owner_sub: Sub | None
    next_sequence: int
    lease_id: str | None
    lease_until: float
    kept_lease: str | None
    kept_from: int
    resume_verifier: str | None


@dataclass(frozen=True)
class JournalPage:
    """Kept events above a sequence (in order), the sealed deliveries, and the session (None: unknown/expired)."""

    events: tuple[KeptEvent, ...]
    sealed: dict[int, SealedDelivery]
    session: KeptSession | None


class ChatEventJournal(Protocol):
    """The kept events of keep_running chat turns, shared by every replica, expiring with their session.

    Every method raises `UpstreamUnavailableError` when the store cannot be reached.
    """

    async def mark_kept(self, session_id: str, *, lease_id: str, kept_from: int, resume_verifier: str) -> None:
        """Say that the turn holding `lease_id` keeps its events from `kept_from`; clears an earlier cancel."""
        ...

    async def append(
        self,
        session_id: str,
        events: Sequence[KeptEvent],
        sealed: Sequence[SealedDelivery],
        *,
        expires_at: float,
        bound: bool,
    ) -> None:
        """Keep a batch of events (one write call), until `expires_at` (bound) or the anonymous expiry."""
        ...

    async def read(self, session_id: str, *, after: int) -> JournalPage:
        """The kept events above `after`, with the session's state, in one consistent query."""
        ...

    async def last_sequence(self, session_id: str) -> int:
        """The highest kept sequence of the session (0 when none)."""
        ...

    async def request_cancel(self, session_id: str, *, now: float) -> bool:
        """Ask the running keep_running turn to stop; False when none runs."""
        ...

    async def cancel_requested(self, session_id: str, *, lease_id: str) -> bool:
        """Whether a cancel was asked of the turn holding `lease_id`."""
        ...


ApprovalOutcome = str
"""How a pending action ended: "APPROVED", "DECLINED" or "WITHDRAWN" (stored as its state)."""


class ApprovalStore(Protocol):
    """Actions held for a person's approval, under their chat session, shared by every replica.

    Every change of state is a conditional write: an approval is decided once, whatever replica and however
    many concurrent calls try. Every method raises `UpstreamUnavailableError` when the store cannot be reached.
    """

    async def hold(self, action: PendingAction, *, expires_at: float) -> None:
        """Store a new pending action (forgotten at `expires_at`, the session's time to live)."""
        ...

    async def decide(self, session_id: str, decision: ApprovalDecision, *, owner_sub: Sub, now: float) -> PendingAction:
        """Mark the pending action decided and return it, if it is still pending, the owner's and not expired.

        Raises `ApprovalNotFoundError` (an unknown id, another person's), `ApprovalExpiredError` or
        `ApprovalAlreadyUsedError`; nothing changes then.
        """
        ...

    async def withdraw(self, session_id: str, *, call_id: str, now: float) -> ApprovalOutcome:
        """Withdraw the pending action of the held call `call_id`, if it is pending.

        Returns "WITHDRAWN" (it was pending and is withdrawn now), "EXPIRED" (it was pending but past its time,
        withdrawn now too) or the state it had already ("APPROVED", "DECLINED", "WITHDRAWN"; "" when unknown).
        """
        ...

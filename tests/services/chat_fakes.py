"""Small in-memory implementations of the chat tools' ports (`BookingTools`, `SignInTools`) and of agent models.

For the agent-runtime unit tests only: the end-to-end tests drive the real services over the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from gateway.domain import (
    ConversationEntry,
    JsonObject,
    ModelOutput,
    Principal,
    RoundEnd,
    TextChunk,
    ToolCall,
    ToolSpec,
    TurnFacts,
    Usage,
)
from gateway.errors import NightsTakenError, OtpAttemptsExhaustedError, OtpInvalidError, ReservationNotFoundError
from gateway.services.chat.backends import AvailabilityInfo, LoginStarted, PropertyInfo, ReservationInfo, SignedIn
from tests.support.identity import Tokens

PROPERTIES = (
    PropertyInfo("harbor-loft", "Harbor Loft", "A loft.", 2, 18900, "USD"),
    PropertyInfo("garden-cottage", "Garden Cottage", "A cottage.", 4, 22500, "USD"),
)


@dataclass
class FakeBooking:
    """Bookings in a dict. `gate`, when set, holds create_reservation until it is set (or cancelled)."""

    reservations: list[tuple[str, ReservationInfo]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    create_started: asyncio.Event = field(default_factory=asyncio.Event)
    create_cancelled: bool = False
    request_ids: list[str] = field(default_factory=list)

    async def list_properties(self) -> list[PropertyInfo]:
        return list(PROPERTIES)

    async def check_availability(
        self, property_id: str, check_in: date, check_out: date, guests: int
    ) -> AvailabilityInfo:
        prop = next(p for p in PROPERTIES if p.property_id == property_id)
        nights = (check_out - check_in).days
        taken = tuple(
            check_in + timedelta(days=n)
            for n in range(nights)
            for _, r in self.reservations
            if r.property_id == property_id and r.check_in <= check_in + timedelta(days=n) < r.check_out
        )
        return AvailabilityInfo(prop, check_in, check_out, taken, nights * prop.nightly_rate_cents)

    async def create_reservation(
        self,
        principal: Principal,
        property_id: str,
        check_in: date,
        check_out: date,
        guests: int,
        request_id: str,
    ) -> ReservationInfo:
        self.create_started.set()
        self.request_ids.append(request_id)
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.create_cancelled = True
                raise
        found = await self.check_availability(property_id, check_in, check_out, guests)
        if not found.available:
            raise NightsTakenError(
                "some nights are taken", metadata={"nights": ",".join(n.isoformat() for n in found.taken_nights)}
            )
        reservation = ReservationInfo(
            f"RES-{len(self.reservations) + 2:08d}",
            property_id,
            found.property_info.name,
            check_in,
            check_out,
            guests,
            "CONFIRMED",
            found.total_cents,
            "USD",
            datetime.now(UTC),
        )
        self.reservations.append((principal.sub, reservation))
        return reservation

    async def list_reservations(self, principal: Principal, limit: int) -> list[ReservationInfo]:
        return [r for sub, r in reversed(self.reservations) if sub == principal.sub][:limit]

    async def cancel_reservation(self, principal: Principal, reservation_id: str) -> ReservationInfo:
        for index, (sub, r) in enumerate(self.reservations):
            if sub == principal.sub and r.reservation_id == reservation_id:
                del self.reservations[index]
                return ReservationInfo(**{**r.__dict__, "status": "CANCELLED"})
        raise ReservationNotFoundError("no reservation with that id")


@dataclass
class FakeSignIn:
    """One code per key; the right code answers with real tokens of the emulator's pool."""

    tokens: Tokens
    sub: str
    code: str = "12345678"
    guest_id: str = "GST-2026-TESTED"
    max_attempts: int = 3
    started: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)

    async def start_login(self, key: str, email: str, name: str, client: str) -> LoginStarted:
        self.started[key] = email
        self.attempts[key] = 0
        return LoginStarted("j***@e***", datetime.now(UTC) + timedelta(minutes=3))

    async def verify_login(self, key: str, code: str, client: str) -> SignedIn:
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.attempts[key] > self.max_attempts:
            raise OtpAttemptsExhaustedError("too many wrong codes; start a new sign-in")
        if code != self.code:
            left = self.max_attempts - self.attempts[key]
            raise OtpInvalidError("the code is wrong", metadata={"attempts_left": str(left)})
        return SignedIn(
            id_token=self.tokens.id_token,
            access_token=self.tokens.access_token,
            refresh_token=self.tokens.refresh_token,
            expires_in=3600,
            token_type="Bearer",
            guest_id=self.guest_id,
            email=self.started[key],
            sub=self.sub,
        )


@dataclass
class LoopingModel:
    """Asks for a tool every round, forever."""

    rounds: int = 0

    async def run_round(
        self, conversation: Sequence[ConversationEntry], tools: Sequence[ToolSpec], facts: TurnFacts, memory: JsonObject
    ) -> AsyncGenerator[ModelOutput, None]:
        self.rounds += 1
        yield TextChunk(f"round {self.rounds}. ")
        yield ToolCall(f"loop-{self.rounds}", "list_properties", {})
        yield RoundEnd(wants_tools=True, usage=Usage(10, 3))


@dataclass
class HangingModel:
    """Writes a little, then waits forever (a model that stalls); records whether its stream was closed."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    async def run_round(
        self, conversation: Sequence[ConversationEntry], tools: Sequence[ToolSpec], facts: TurnFacts, memory: JsonObject
    ) -> AsyncGenerator[ModelOutput, None]:
        try:
            yield TextChunk("Thinking")
            self.opened.set()
            await asyncio.Event().wait()
            yield RoundEnd(wants_tools=False, usage=Usage())
        finally:
            self.closed = True


@dataclass
class ScriptModel:
    """Round N yields `rounds[N]`; records the conversations it was shown."""

    rounds: list[list[ModelOutput | Exception]]
    seen: list[list[ConversationEntry]] = field(default_factory=list)
    facts: list[TurnFacts] = field(default_factory=list)

    async def run_round(
        self, conversation: Sequence[ConversationEntry], tools: Sequence[ToolSpec], facts: TurnFacts, memory: JsonObject
    ) -> AsyncGenerator[ModelOutput, None]:
        self.seen.append(list(conversation))
        self.facts.append(facts)
        outputs = self.rounds[len(self.seen) - 1]
        for output in outputs:
            if isinstance(output, Exception):
                raise output
            yield output

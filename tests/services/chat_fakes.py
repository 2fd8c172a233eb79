"""Small in-memory implementations of the chat tools' ports (`BookingTools`, `SignInTools`) and of agent models.

For the agent-runtime unit tests only: the end-to-end tests drive the real services over the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from gateway.domain import (
    Availability,
    ConversationEntry,
    GuestId,
    JsonObject,
    LoginDoor,
    LoginId,
    LoginStarted,
    ModelOutput,
    NightAvailability,
    Principal,
    Property,
    Reservation,
    ReservationId,
    ReservationPage,
    ReservationStatus,
    RoundEnd,
    Stay,
    Sub,
    TextChunk,
    TokenDelivery,
    ToolCall,
    ToolSpec,
    TurnFacts,
    Usage,
)
from gateway.errors import NightsTakenError, OtpAttemptsExhaustedError, OtpInvalidError, ReservationNotFoundError
from tests.support.identity import Tokens

PROPERTIES = (
    Property("harbor-loft", "Harbor Loft", "A loft.", 2, 18900, "USD"),
    Property("garden-cottage", "Garden Cottage", "A cottage.", 4, 22500, "USD"),
)


@dataclass
class FakeBooking:
    """Bookings in a list. `gate`, when set, holds create_reservation until it is set (or cancelled)."""

    reservations: list[Reservation] = field(default_factory=list)
    gate: asyncio.Event | None = None
    create_started: asyncio.Event = field(default_factory=asyncio.Event)
    create_cancelled: bool = False
    request_ids: list[str] = field(default_factory=list)

    async def list_properties(self) -> list[Property]:
        return list(PROPERTIES)

    async def check_availability(self, stay: Stay) -> Availability:
        prop = next(p for p in PROPERTIES if p.property_id == stay.property_id)
        held = {night for r in self.reservations if r.stay.property_id == stay.property_id for night in r.nights}
        nights = tuple(NightAvailability(night, night not in held) for night in stay.nights)
        return Availability(
            prop,
            nights,
            all(n.available for n in nights) and stay.guests <= prop.capacity,
            len(nights) * prop.nightly_rate_cents,
            prop.currency,
        )

    async def create_reservation(self, owner: Principal, stay: Stay, *, request_id: str) -> Reservation:
        self.create_started.set()
        self.request_ids.append(request_id)
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.create_cancelled = True
                raise
        found = await self.check_availability(stay)
        taken = [n.night.isoformat() for n in found.nights if not n.available]
        if taken:
            raise NightsTakenError("some nights are taken", metadata={"nights": ",".join(taken)})
        reservation = Reservation(
            ReservationId(f"RES-{len(self.reservations) + 2:08d}"),
            owner.sub,
            stay,
            found.property.name,
            ReservationStatus.CONFIRMED,
            found.total_cents,
            found.currency,
            datetime.now(UTC),
        )
        self.reservations.append(reservation)
        return reservation

    async def list_reservations(self, owner: Principal, *, page_size: int = 0, page_token: str = "") -> ReservationPage:
        return ReservationPage(tuple(r for r in reversed(self.reservations) if r.owner == owner.sub))

    async def get_reservation(self, owner: Principal, reservation_id: str) -> Reservation:
        for r in self.reservations:
            if r.owner == owner.sub and r.reservation_id == reservation_id:
                return r
        raise ReservationNotFoundError("no reservation with that id")

    async def cancel_reservation(self, owner: Principal, reservation_id: str) -> Reservation:
        for index, r in enumerate(self.reservations):
            if r.owner == owner.sub and r.reservation_id == reservation_id:
                del self.reservations[index]
                return replace(r, status=ReservationStatus.CANCELLED)
        raise ReservationNotFoundError("no reservation with that id")


@dataclass
class FakeSignIn:
    """One code per login key; the right code answers with real tokens of the emulator's pool."""

    tokens: Tokens
    sub: str
    code: str = "12345678"
    guest_id: str = "GST-2026-TESTED"
    max_attempts: int = 3
    started: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)

    async def initiate(
        self,
        email: str,
        name: str = "",
        client_address: str = "",
        *,
        login_key: str | None = None,
        door: LoginDoor = "unary",
    ) -> LoginStarted:
        assert login_key is not None
        assert door == "chat"
        self.started[login_key] = email
        self.attempts[login_key] = 0
        now = datetime.now(UTC)
        return LoginStarted(LoginId(login_key), "j***@e***", now + timedelta(minutes=3), now + timedelta(minutes=1))

    async def is_pending(self, login_key: str, door: LoginDoor = "unary") -> bool:
        return door == "chat" and login_key in self.started

    async def verify(
        self, login_key: str, code: str, client_address: str = "", *, door: LoginDoor = "unary"
    ) -> TokenDelivery:
        assert door == "chat"
        self.attempts[login_key] = self.attempts.get(login_key, 0) + 1
        if self.attempts[login_key] > self.max_attempts:
            raise OtpAttemptsExhaustedError("too many wrong codes; start a new sign-in")
        if code != self.code:
            left = self.max_attempts - self.attempts[login_key]
            raise OtpInvalidError("the code is wrong", metadata={"attempts_left": str(left)})
        return TokenDelivery(
            id_token=self.tokens.id_token,
            access_token=self.tokens.access_token,
            refresh_token=self.tokens.refresh_token,
            expires_in_seconds=3600,
            token_type="Bearer",
            guest_id=GuestId(self.guest_id),
            email=self.started[login_key],
            sub=Sub(self.sub),
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

"""Reservations: properties, availability, booking and a guest's own reservations.

Used by the ReservationService RPCs and by the chat agent's tools. Knows nothing of gRPC or DynamoDB: the store
comes in through the `ReservationStore` port. Input rules live here, so every caller gets the same answers;
field names in violations are those of the `booking.v1` request messages.
"""

from __future__ import annotations

import datetime
import logging
import re
import secrets
from collections.abc import Callable

from gateway.domain import (
    MAX_NIGHTS,
    MAX_YEARS_AHEAD,
    Availability,
    Calendar,
    GuestId,
    NightAvailability,
    Principal,
    Property,
    Reservation,
    ReservationId,
    ReservationPage,
    ReservationStatus,
    Stay,
    Sub,
)
from gateway.errors import (
    CapacityExceededError,
    FieldViolation,
    InvalidArgumentError,
    PropertyNotFoundError,
    RequestIdReusedError,
    ReservationNotFoundError,
)
from gateway.ports import GuestLookup, ReservationStore

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE_TOKEN_CHARS = 2048
MAX_PROPERTY_ID_CHARS = 64
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")

# No 0/O, 1/I/L or U: ids are read aloud and typed by people.
RESERVATION_ID_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
RESERVATION_ID_PREFIX = "RES-"
RESERVATION_ID_LENGTH = 8
RESERVATION_ID_PATTERN = re.compile(rf"{RESERVATION_ID_PREFIX}[{RESERVATION_ID_ALPHABET}]{{{RESERVATION_ID_LENGTH}}}")

Owner = Principal | Sub
"""Whose reservations: a verified principal, or just its `sub` (the chat agent's bound session)."""


def new_reservation_id() -> ReservationId:
    """A random readable id like "RES-7K2Q9D4M" (30^8, about 6.6 * 10^11 possibilities)."""
    chars = "".join(secrets.choice(RESERVATION_ID_ALPHABET) for _ in range(RESERVATION_ID_LENGTH))
    return ReservationId(RESERVATION_ID_PREFIX + chars)


def _years_later(day: datetime.date, years: int) -> datetime.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _owner(owner: Owner) -> tuple[Sub, GuestId | None]:
    if isinstance(owner, Principal):
        return owner.sub, owner.guest_id
    return owner, None


class ReservationService:
    """Availability for anyone; bookings for a verified guest, who only ever sees their own.

    Stays are judged by today in `calendar`'s time zone (the one the chat reads dates in); its clock also stamps
    bookings and cancellations. Without a calendar, today is the UTC date of the wall clock.
    """

    def __init__(
        self,
        store: ReservationStore,
        *,
        guests: GuestLookup | None = None,
        calendar: Calendar | None = None,
        new_id: Callable[[], ReservationId] = new_reservation_id,
    ) -> None:
        self._store = store
        self._guests = guests
        # Today for the rules and the clock for the stamps; the chat reads its dates from the same calendar.
        self._calendar = calendar or Calendar.named("UTC")
        self._clock = self._calendar.clock
        self._new_id = new_id

    # Public: properties and availability ------------------------------------------------------------------

    async def list_properties(self) -> list[Property]:
        """Every bookable property, by name."""
        properties = await self._store.list_properties()
        return sorted(properties, key=lambda p: (p.name, p.property_id))

    async def check_availability(self, stay: Stay) -> Availability:
        """Which nights of `stay` are free and what it costs.

        `available` is true when every night is free and the property holds `stay.guests`. Raises
        `InvalidArgumentError` for bad dates or guests and `PropertyNotFoundError`.
        """
        self._check_stay(stay)
        prop = await self._property(stay.property_id)
        held = await self._store.held_nights(stay.property_id, stay.nights)
        nights = tuple(NightAvailability(night, night not in held) for night in stay.nights)
        return Availability(
            property=prop,
            nights=nights,
            available=not held and stay.guests <= prop.capacity,
            total_cents=len(nights) * prop.nightly_rate_cents,
            currency=prop.currency,
        )

    # Signed in: a guest's own reservations ----------------------------------------------------------------

    async def create_reservation(self, owner: Owner, stay: Stay, *, request_id: str) -> Reservation:
        """Book `stay` for `owner`, all nights or none.

        The same `request_id` with the same stay returns the reservation booked first and never books twice;
        with another stay it raises `RequestIdReusedError`. Raises `InvalidArgumentError`,
        `PropertyNotFoundError`, `CapacityExceededError` and `NightsTakenError` (metadata "nights").
        """
        sub, guest_id = _owner(owner)
        self._check_stay(stay, request_id=request_id)
        prop = await self._property(stay.property_id)
        if guest_id is None and self._guests is not None:
            profile = await self._guests.get(sub)
            guest_id = profile.guest_id if profile is not None else None
        if stay.guests > prop.capacity:
            raise CapacityExceededError(
                f"{prop.name} holds at most {prop.capacity} guests", metadata={"capacity": str(prop.capacity)}
            )
        candidate = Reservation(
            reservation_id=self._new_id(),
            owner=sub,
            stay=stay,
            property_name=prop.name,
            status=ReservationStatus.CONFIRMED,
            total_cents=len(stay.nights) * prop.nightly_rate_cents,
            currency=prop.currency,
            created_at=self._clock(),
            guest_id=guest_id,
        )
        stored = await self._store.reserve_nights(candidate, request_id=request_id)
        if stored.owner != sub or stored.stay != stay:
            raise RequestIdReusedError(
                "request_id: already used for another booking; use a new request id",
                violations=[FieldViolation("request_id", "already used for a booking with other content")],
            )
        if stored.reservation_id == candidate.reservation_id:
            log.info("reservation booked", extra={"reservation_id": stored.reservation_id})
        return stored

    async def list_reservations(self, owner: Owner, *, page_size: int = 0, page_token: str = "") -> ReservationPage:
        """One page of the owner's reservations, newest first.

        `page_size` 0 means 20 and more than 100 means 100; `page_token` is "" or the previous page's
        `next_page_token`, which only works for the guest it was given to.
        """
        sub, _ = _owner(owner)
        if page_size < 0:
            raise InvalidArgumentError.for_field("page_size", "must be 0 (default) to 100")
        if len(page_token) > MAX_PAGE_TOKEN_CHARS:
            raise InvalidArgumentError.for_field("page_token", "use the next_page_token of your previous page")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        return await self._store.list_reservations(sub, page_size=size, page_token=page_token)

    async def get_reservation(self, owner: Owner, reservation_id: str) -> Reservation:
        """One of the owner's reservations; `ReservationNotFoundError` for anyone else's or an unknown id."""
        sub, _ = _owner(owner)
        found = await self._store.get_reservation(sub, self._reservation_id(reservation_id))
        if found is None:
            raise ReservationNotFoundError("no reservation with that id")
        return found

    async def cancel_reservation(self, owner: Owner, reservation_id: str) -> Reservation:
        """Cancel one of the owner's reservations and free its nights; cancelling twice returns it unchanged."""
        reservation = await self.get_reservation(owner, reservation_id)
        if reservation.status is ReservationStatus.CANCELLED:
            return reservation
        cancelled = await self._store.release_nights(reservation, cancelled_at=self._clock())
        log.info("reservation cancelled", extra={"reservation_id": cancelled.reservation_id})
        return cancelled

    # Rules ------------------------------------------------------------------------------------------------

    def _today(self) -> datetime.date:
        return self._calendar.today()

    def _check_stay(self, stay: Stay, *, request_id: str | None = None) -> None:
        """Raise `InvalidArgumentError` naming every bad field of a stay (and of the request id, if given)."""
        violations: list[FieldViolation] = []
        if request_id is not None and not REQUEST_ID_PATTERN.fullmatch(request_id):
            violations.append(FieldViolation("request_id", "must be 8 to 64 letters, digits, '-' or '_'"))
        if not stay.property_id:
            violations.append(FieldViolation("property_id", "is required"))
        elif len(stay.property_id) > MAX_PROPERTY_ID_CHARS:
            violations.append(FieldViolation("property_id", f"must be at most {MAX_PROPERTY_ID_CHARS} characters"))
        today = self._today()
        last_checkout = _years_later(today, MAX_YEARS_AHEAD)
        if stay.check_in < today:
            zone = self._calendar.zone_name
            violations.append(
                FieldViolation("check_in", f"must not be in the past (today is {today.isoformat()} in {zone})")
            )
        if stay.check_out <= stay.check_in:
            violations.append(FieldViolation("check_out", "must be after check_in"))
        elif (stay.check_out - stay.check_in).days > MAX_NIGHTS:
            violations.append(FieldViolation("check_out", f"must be at most {MAX_NIGHTS} nights after check_in"))
        elif stay.check_out > last_checkout:
            violations.append(
                FieldViolation("check_out", f"must be at most two years ahead (until {last_checkout.isoformat()})")
            )
        if stay.guests < 1:
            violations.append(FieldViolation("guests", "must be at least 1"))
        if violations:
            raise InvalidArgumentError(
                "; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations
            )

    @staticmethod
    def _reservation_id(text: str) -> ReservationId:
        normalized = text.strip().upper()
        if not normalized:
            raise InvalidArgumentError.for_field("reservation_id", "is required")
        if not RESERVATION_ID_PATTERN.fullmatch(normalized):
            raise InvalidArgumentError.for_field(
                "reservation_id", f"must be {RESERVATION_ID_PREFIX} and {RESERVATION_ID_LENGTH} letters or digits"
            )
        return ReservationId(normalized)

    async def _property(self, property_id: str) -> Property:
        prop = await self._store.get_property(property_id)
        if prop is None:
            raise PropertyNotFoundError("no such property; ListProperties names them")
        return prop

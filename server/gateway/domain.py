"""Domain values shared by every layer: ids, the authenticated principal. Imports nothing of ours."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import NewType

Sub = NewType("Sub", str)
"""A Cognito subject: the immutable user id every guest record is keyed by."""

GuestId = NewType("GuestId", str)
"""A guest profile id, like "GST-2026-7K2Q9D"."""

LoginId = NewType("LoginId", str)
"""An opaque login attempt id (at least 128 random bits), handed to clients instead of the Cognito session."""


@dataclass(frozen=True)
class Principal:
    """A caller whose bearer token was verified.

    `token_family` is the token's `origin_jti`: every access token refreshed from one sign-in shares it, so
    revoking it signs that whole session out. `expires_at` is the token's `exp` in epoch seconds.
    """

    sub: Sub
    username: str
    client_id: str
    token_family: str
    expires_at: float
    email: str = ""
    guest_id: GuestId | None = None


# Reservations -------------------------------------------------------------------------------------------------

ReservationId = NewType("ReservationId", str)
"""A reservation id: "RES-" and 8 characters of an unambiguous alphabet, like "RES-7K2Q9D4M"."""


class ReservationStatus(enum.Enum):
    """The state of a reservation."""

    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class Property:
    """A place that can be booked. Money is in the smallest currency unit (cents)."""

    property_id: str
    name: str
    description: str
    capacity: int
    nightly_rate_cents: int
    currency: str


@dataclass(frozen=True)
class Stay:
    """Consecutive nights at one property: check-in inclusive, check-out exclusive."""

    property_id: str
    check_in: datetime.date
    check_out: datetime.date
    guests: int

    @property
    def nights(self) -> tuple[datetime.date, ...]:
        """Each night of the stay, named by the date it starts, in order."""
        count = (self.check_out - self.check_in).days
        return tuple(self.check_in + datetime.timedelta(days=n) for n in range(count))


@dataclass(frozen=True)
class NightAvailability:
    """Whether one night is free."""

    night: datetime.date
    available: bool


@dataclass(frozen=True)
class Availability:
    """Which nights of a stay are free, and what the stay costs."""

    property: Property
    nights: tuple[NightAvailability, ...]
    available: bool
    total_cents: int
    currency: str


@dataclass(frozen=True)
class Reservation:
    """A guest's booking of consecutive nights at one property. `owner` is the booker's Cognito `sub`."""

    reservation_id: ReservationId
    owner: Sub
    stay: Stay
    property_name: str
    status: ReservationStatus
    total_cents: int
    currency: str
    created_at: datetime.datetime
    guest_id: GuestId | None = None

    @property
    def nights(self) -> tuple[datetime.date, ...]:
        """The nights this reservation holds (while confirmed)."""
        return self.stay.nights


@dataclass(frozen=True)
class ReservationPage:
    """One page of a guest's reservations, newest first; `next_page_token` is empty on the last page."""

    reservations: tuple[Reservation, ...]
    next_page_token: str = ""

"""What the agent's tools need from the booking and sign-in services, shaped by the tools.

These Protocols are the chat package's view of the reservation and login services (issues 3 and 5). The
composition root (`gateway.app`) wires an implementation of each; the tools never see Cognito sessions, login
ids or tokens except through `SignedIn`, which only the gateway (never the model) reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from gateway.domain import Principal
from gateway.errors import NotImplementedYetError


@dataclass(frozen=True)
class PropertyInfo:
    """A bookable property."""

    property_id: str
    name: str
    description: str
    capacity: int
    nightly_rate_cents: int
    currency: str


@dataclass(frozen=True)
class AvailabilityInfo:
    """Which nights of a stay are free at a property, and what the stay costs."""

    property_info: PropertyInfo
    check_in: date
    check_out: date
    taken_nights: tuple[date, ...]
    total_cents: int

    @property
    def available(self) -> bool:
        """True when every night is free."""
        return not self.taken_nights


@dataclass(frozen=True)
class ReservationInfo:
    """A guest's reservation."""

    reservation_id: str
    property_id: str
    property_name: str
    check_in: date
    check_out: date
    guests: int
    status: str
    total_cents: int
    currency: str
    created_at: datetime


@dataclass(frozen=True)
class LoginStarted:
    """A one-time code is on its way; the login state stays on the server under the caller's key."""

    destination: str
    expires_at: datetime


@dataclass(frozen=True)
class SignedIn:
    """The tokens of a successful sign-in. Only the gateway reads them; they never reach a model or a log."""

    id_token: str = field(repr=False)
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    token_type: str
    guest_id: str
    email: str = field(repr=False)
    sub: str


class BookingTools(Protocol):
    """The reservation service as the agent's tools use it. Errors are the service's domain errors."""

    async def list_properties(self) -> list[PropertyInfo]:
        """Every bookable property."""
        ...

    async def check_availability(
        self, property_id: str, check_in: date, check_out: date, guests: int
    ) -> AvailabilityInfo:
        """Availability and price of a stay."""
        ...

    async def create_reservation(
        self,
        principal: Principal,
        property_id: str,
        check_in: date,
        check_out: date,
        guests: int,
        request_id: str,
    ) -> ReservationInfo:
        """Book a stay for `principal`; the same `request_id` never books twice."""
        ...

    async def list_reservations(self, principal: Principal, limit: int) -> list[ReservationInfo]:
        """The principal's reservations, newest first."""
        ...

    async def cancel_reservation(self, principal: Principal, reservation_id: str) -> ReservationInfo:
        """Cancel one of the principal's reservations."""
        ...


class SignInTools(Protocol):
    """The login service as the agent's tools use it: login state kept under a caller-chosen key."""

    async def start_login(self, key: str, email: str, name: str, client: str) -> LoginStarted:
        """Send a one-time code to `email`, keeping the login state under `key` (replacing an earlier one)."""
        ...

    async def verify_login(self, key: str, code: str, client: str) -> SignedIn:
        """Exchange the code of the login kept under `key` for tokens (same limits and errors as VerifyOtp)."""
        ...


class NotServedYet:
    """Stands in for the reservation and login services in a build that does not serve them yet.

    Every call raises `NotImplementedYetError`, which the tools turn into a failed result the model explains.
    """

    async def list_properties(self) -> list[PropertyInfo]:
        raise NotImplementedYetError("bookings are not available in this build yet")

    async def check_availability(
        self, property_id: str, check_in: date, check_out: date, guests: int
    ) -> AvailabilityInfo:
        raise NotImplementedYetError("bookings are not available in this build yet")

    async def create_reservation(
        self,
        principal: Principal,
        property_id: str,
        check_in: date,
        check_out: date,
        guests: int,
        request_id: str,
    ) -> ReservationInfo:
        raise NotImplementedYetError("bookings are not available in this build yet")

    async def list_reservations(self, principal: Principal, limit: int) -> list[ReservationInfo]:
        raise NotImplementedYetError("bookings are not available in this build yet")

    async def cancel_reservation(self, principal: Principal, reservation_id: str) -> ReservationInfo:
        raise NotImplementedYetError("bookings are not available in this build yet")

    async def start_login(self, key: str, email: str, name: str, client: str) -> LoginStarted:
        raise NotImplementedYetError("sign-in is not available in this build yet")

    async def verify_login(self, key: str, code: str, client: str) -> SignedIn:
        raise NotImplementedYetError("sign-in is not available in this build yet")

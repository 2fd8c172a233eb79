"""What the agent's tools need from the booking and sign-in services, shaped by the tools.

These Protocols are the chat package's view of the reservation and login services (issues 3 and 5). The
composition root (`gateway.app`) wires an implementation of each; the tools never see Cognito sessions, login
ids or tokens except through `SignedIn`, which only the gateway (never the model) reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from gateway.domain import Availability, Principal, Property, Reservation, ReservationPage, Stay
from gateway.errors import NotImplementedYetError


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
    """The reservation service as the agent's tools use it (`ReservationService` fits as it is).

    Errors are the service's domain errors; the tools turn them into failed results.
    """

    async def list_properties(self) -> list[Property]:
        """Every bookable property."""
        ...

    async def check_availability(self, stay: Stay) -> Availability:
        """Availability and price of a stay."""
        ...

    async def create_reservation(self, owner: Principal, stay: Stay, *, request_id: str) -> Reservation:
        """Book a stay for `owner`; the same `request_id` never books twice."""
        ...

    async def list_reservations(self, owner: Principal, *, page_size: int = 0, page_token: str = "") -> ReservationPage:
        """The owner's reservations, newest first."""
        ...

    async def cancel_reservation(self, owner: Principal, reservation_id: str) -> Reservation:
        """Cancel one of the owner's reservations."""
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
    """Stands in for the login service in a build that does not serve sign-in yet.

    Every call raises `NotImplementedYetError`, which the tools turn into a failed result the model explains.
    """

    async def start_login(self, key: str, email: str, name: str, client: str) -> LoginStarted:
        raise NotImplementedYetError("sign-in is not available in this build yet")

    async def verify_login(self, key: str, code: str, client: str) -> SignedIn:
        raise NotImplementedYetError("sign-in is not available in this build yet")

"""What the agent's tools need from the booking and sign-in services, shaped by the tools.

These Protocols are the chat package's view of the reservation and login services (issues 3 and 5). The
composition root (`gateway.app`) wires the real services. The tools never put Cognito sessions, login ids or
tokens into a result: a `TokenDelivery` goes to the gateway, which writes it onto the stream.
"""

from __future__ import annotations

from typing import Protocol

from gateway.domain import (
    Availability,
    LoginDoor,
    LoginStarted,
    Principal,
    Property,
    Reservation,
    ReservationPage,
    Stay,
    TokenDelivery,
)
from gateway.errors import NotImplementedYetError


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

    async def get_reservation(self, owner: Principal, reservation_id: str) -> Reservation:
        """One of the owner's reservations (`ReservationNotFoundError` for anybody else's)."""
        ...

    async def cancel_reservation(self, owner: Principal, reservation_id: str) -> Reservation:
        """Cancel one of the owner's reservations."""
        ...


class SignInTools(Protocol):
    """The login service as the agent's tools use it (`LoginService` fits as it is).

    The chat keeps a login under a key of its own (derived from the chat session id) instead of a login id, so
    the model never sees a login id or a Cognito session. Same limits and errors as the unary RPCs.
    """

    async def initiate(
        self,
        email: str,
        name: str = "",
        client_address: str = "",
        *,
        login_key: str | None = None,
        door: LoginDoor = "unary",
    ) -> LoginStarted:
        """Send a one-time code to `email`, keeping the login under `login_key` (replacing an earlier one).

        The chat passes `door="chat"`: its logins are answerable only in the chat, never through VerifyOtp.
        """
        ...

    async def verify(
        self, login_key: str, code: str, client_address: str = "", *, door: LoginDoor = "unary"
    ) -> TokenDelivery:
        """Exchange the code of the login kept under `login_key` (started through `door`) for tokens."""
        ...

    async def is_pending(self, login_key: str, door: LoginDoor = "unary") -> bool:
        """True while a login started through `door` waits for its code under `login_key`."""
        ...


class SignInNotConfigured:
    """Stands in for the login service on a gateway without a user pool.

    Every call raises `NotImplementedYetError`, which the tools turn into a failed result the model explains.
    """

    async def initiate(
        self,
        email: str,
        name: str = "",
        client_address: str = "",
        *,
        login_key: str | None = None,
        door: LoginDoor = "unary",
    ) -> LoginStarted:
        raise NotImplementedYetError("sign-in is not configured on this gateway")

    async def verify(
        self, login_key: str, code: str, client_address: str = "", *, door: LoginDoor = "unary"
    ) -> TokenDelivery:
        raise NotImplementedYetError("sign-in is not configured on this gateway")

    async def is_pending(self, login_key: str, door: LoginDoor = "unary") -> bool:
        return False

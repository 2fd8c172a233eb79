"""SignOut over the wire: the refresh token is revoked at Cognito and the session refused on every replica."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from booking.v1 import auth_pb2, reservations_pb2, reservations_pb2_grpc
from gateway.config import Settings
from gateway.testing import eventually
from tests.support.auth import auth_stub, gateway_with, new_email, sign_in
from tests.support.gateway import RunningGateway
from tests.support.status import reason_of


def bearer(access_token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {access_token}"),)


async def sign_out(gateway: RunningGateway, access_token: str, refresh_token: str = "") -> None:
    await auth_stub(gateway).SignOut(
        auth_pb2.SignOutRequest(refresh_token=refresh_token), metadata=bearer(access_token), timeout=10
    )


async def refresh(gateway: RunningGateway, refresh_token: str) -> auth_pb2.RefreshSessionResponse:
    return await auth_stub(gateway).RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=refresh_token), timeout=10
    )


async def test_sign_out_revokes_the_refresh_token_and_refuses_the_access_token(gateway: RunningGateway) -> None:
    delivery = await sign_in(gateway, new_email())
    await sign_out(gateway, delivery.access_token, delivery.refresh_token)

    with pytest.raises(aio.AioRpcError) as caught:
        await sign_out(gateway, delivery.access_token, delivery.refresh_token)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")
    with pytest.raises(aio.AioRpcError) as caught:
        await refresh(gateway, delivery.refresh_token)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


async def test_sign_out_needs_a_bearer_token(gateway: RunningGateway) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await auth_stub(gateway).SignOut(auth_pb2.SignOutRequest(), timeout=10)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


async def test_without_a_refresh_token_sign_out_refuses_the_whole_token_family_even_after_refresh(
    gateway: RunningGateway,
) -> None:
    delivery = await sign_in(gateway, new_email())
    await sign_out(gateway, delivery.access_token)

    # Cognito still honours the refresh token, but what it mints belongs to the signed-out family.
    refreshed = await refresh(gateway, delivery.refresh_token)
    with pytest.raises(aio.AioRpcError) as caught:
        await sign_out(gateway, refreshed.access_token)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")


async def refusal(gateway: RunningGateway, access_token: str) -> str | None:
    """The TOKEN_* reason a REQUIRED call with this bearer is refused with, or None when it is accepted.

    ListReservations is the probe: whatever it answers once authenticated, only the bearer check says UNAUTHENTICATED.
    """
    stub = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    try:
        await stub.ListReservations(
            reservations_pb2.ListReservationsRequest(), metadata=bearer(access_token), timeout=10
        )
    except aio.AioRpcError as exc:
        code, reason = reason_of(exc)
        return reason if code == grpc.StatusCode.UNAUTHENTICATED else None
    return None


async def test_another_replica_refuses_the_signed_out_session_after_its_next_poll(
    gateway: RunningGateway, settings: Settings
) -> None:
    async with gateway_with(gateway, settings, revocation_poll_seconds=0.05) as replica:
        delivery = await sign_in(gateway, new_email())
        other = await sign_in(gateway, new_email())
        assert await refusal(replica, delivery.access_token) is None
        await sign_out(gateway, delivery.access_token, delivery.refresh_token)

        reason = await eventually(lambda: refusal(replica, delivery.access_token), timeout_seconds=5)
        assert reason == "TOKEN_REVOKED"
        # Another person's session on that replica is untouched.
        assert await refusal(replica, other.access_token) is None

"""One person is one account whatever the case of their email: `probe@`, `Probe@` and `PROBE@` sign in as one
`sub` and one guest, as a case-insensitive Cognito pool (docs/deployment.md) makes them, and the devstack too."""

from __future__ import annotations

import uuid

from booking.v1 import reservations_pb2, reservations_pb2_grpc
from gateway.config import Settings
from tests.support.auth import gateway_with, sign_in
from tests.support.gateway import RunningGateway


async def test_three_casings_of_one_email_sign_in_as_one_sub_and_one_guest(
    gateway: RunningGateway, settings: Settings
) -> None:
    local = f"probe-{uuid.uuid4().hex[:8]}"
    casings = [f"{local}@example.com", f"{local.capitalize()}@Example.com", f"{local.upper()}@EXAMPLE.COM"]
    # Signing in three times in a row must not meet the per-email resend cooldown.
    async with gateway_with(gateway, settings, login_resend_cooldown_seconds=0.001) as gw:
        deliveries = [await sign_in(gw, email, name="Probe") for email in casings]
        assert len({delivery.sub for delivery in deliveries}) == 1
        assert len({delivery.guest_id for delivery in deliveries}) == 1
        stub = reservations_pb2_grpc.ReservationServiceStub(gw.channel)
        for delivery in deliveries:  # each casing's token is that one guest's
            await stub.ListReservations(
                reservations_pb2.ListReservationsRequest(),
                metadata=(("authorization", f"Bearer {delivery.access_token}"),),
                timeout=10,
            )
    # The emulator holds one user for them: every code went to the address that user was created with.
    mailed = gw.devstack.mailbox.messages(casings[0])
    assert len(mailed) == 3
    assert {message.email for message in mailed} == {casings[0]}

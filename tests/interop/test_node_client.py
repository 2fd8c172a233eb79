"""The Node/TypeScript client runs the seed's journey against the real gateway over native gRPC (HTTP/2)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.gateway import RunningGateway
from tests.support.identity import unique_email
from tests.support.interactive import Interactive
from tests.support.reservations import days_ahead

NODE_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"
TSX = NODE_CLIENT / "node_modules" / ".bin" / "tsx"


async def test_the_node_client_runs_the_journey_anonymous_chat_login_token_delivery_reservations(
    gateway: RunningGateway,
) -> None:
    email = unique_email("node")
    check_in, check_out = days_ahead(400), days_ahead(403)
    journey = await Interactive.start(
        str(TSX),
        "src/journey.ts",
        gateway.target,
        cwd=str(NODE_CLIENT),
        env={"JOURNEY_EMAIL": email, "JOURNEY_STAY": f"{check_in.isoformat()} to {check_out.isoformat()}"},
    )
    try:
        await journey.expect(f"waiting for the sign-in code sent to {email}", timeout=60)
        journey.send(await gateway.devstack.mailbox.wait_for_code(email))
        assert await journey.wait(timeout=60) == 0, journey.output
    finally:
        await journey.stop()
    result = json.loads(journey.output.rsplit("RESULT ", 1)[1])
    assert result["anonymous"] is True  # the first turn ran without a bearer
    assert result["tokenDelivered"] is True  # TokenDelivery arrived on the Chat stream
    # The booking was asked for approval with the gateway's summary, and approved by a decision.
    assert result["approvalSummary"].startswith("Book Harbor Loft, ")
    assert result["approvalSummary"].endswith(", 3 nights, 2 guests, 567.00 USD")
    assert result["signedInAs"] == email
    assert result["guestId"].startswith("GST-")
    assert result["chatAuthenticated"] is True  # "what are my reservations?" carried the bearer
    # ListReservations with the bearer returns the booking made on the approval after the sign-in.
    assert result["reservations"] == [
        {
            "reservationId": result["reservations"][0]["reservationId"],
            "propertyId": "harbor-loft",
            "checkIn": check_in.isoformat(),
            "checkOut": check_out.isoformat(),
            "guests": 2,
            "status": "CONFIRMED",
            "guestId": result["guestId"],
        }
    ]
    assert "agent> " in journey.output

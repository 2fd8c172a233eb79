"""The Node/TypeScript client runs the seed's journey against the real gateway over native gRPC (HTTP/2)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from booking.v1 import chat_pb2
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from tests.support.chat import chat
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.identity import emulator_sign_in, unique_email
from tests.support.interactive import Interactive
from tests.support.processes import run_to_exit
from tests.support.reservations import create_property, days_ahead

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


async def test_the_node_resume_example_cuts_a_kept_turn_and_resumes_it_whole(gateway: RunningGateway) -> None:
    reference = (await chat(gateway.channel, "help")).text
    example = await Interactive.start(str(TSX), "src/resume.ts", gateway.target, "help", cwd=str(NODE_CLIENT))
    try:
        assert await example.wait(timeout=60) == 0, example.output
    finally:
        await example.stop()
    result = json.loads(example.output.rsplit("RESULT ", 1)[1])
    assert result["sequences"] == list(range(result["sequences"][0], result["sequences"][0] + len(result["sequences"])))
    assert result["text"] == reference
    assert result["stopReason"] == chat_pb2.STOP_REASON_END_TURN
    assert "cut after sequence 3" in example.output


async def test_the_journey_exits_1_when_a_step_fails(gateway: RunningGateway) -> None:
    """The second journey for the same stay: the agent finds the Harbor Loft taken (it checks the stay before it
    asks to book), so no booking is asked for, and the journey fails."""
    stay = f"{days_ahead(405).isoformat()} to {days_ahead(407).isoformat()}"
    for attempt in ("first", "second"):
        email = unique_email(f"node-{attempt}")
        journey = await Interactive.start(
            str(TSX),
            "src/journey.ts",
            gateway.target,
            cwd=str(NODE_CLIENT),
            env={"JOURNEY_EMAIL": email, "JOURNEY_STAY": stay},
        )
        try:
            await journey.expect("code: ", timeout=60)
            journey.send(await gateway.devstack.mailbox.wait_for_code(email))
            code = await journey.wait(timeout=60)
        finally:
            await journey.stop()
        if attempt == "first":
            assert code == 0, journey.output
    assert code == 1, journey.output
    assert "the Harbor Loft is not free then" in journey.output
    assert "journey failed: the agent did not ask to approve the booking" in journey.output
    assert "RESULT " not in journey.output


async def test_describe_error_names_the_reason_once(gateway: RunningGateway, tmp_path: Path) -> None:
    """The gateway's message ends with "[REASON]" for people; describeError puts the reason up front, once."""
    probe = tmp_path / "probe.mts"  # an ES module (top-level await)
    probe.write_text(
        f'import {{ BookingClient, describeError }} from "{NODE_CLIENT / "src" / "client.js"}";\n'
        f'const client = new BookingClient("{gateway.target}", {{ tls: false }});\n'
        'try { await client.auth.initiateLogin({ email: "not an address" }); } catch (error) {\n'
        "  console.log(describeError(error));\n}\n"
    )
    code, out, err = await run_to_exit(str(TSX), str(probe), cwd=NODE_CLIENT, timeout=60)
    assert code == 0, err
    assert out.strip() == "InvalidArgument INVALID_ARGUMENT: email: must be an email address like name@example.com"


@pytest.fixture(scope="module")
async def typing_gateway(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway whose scripted agent types slowly, so that a cut lands in the middle of a turn."""
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=30.0)) as running:
        yield running


async def test_the_node_client_keeps_message_and_decision_turns_across_a_dropped_connection_and_cancels_them(
    typing_gateway: RunningGateway, aws: AwsClients, table: str, tmp_path: Path
) -> None:
    """`clients/node/tests/keep-running.test.ts` (node:test under tsx): both kinds of turn run with keep_running,
    so a connection cut mid-turn is resumed with ResumeChat, each event once, and the approved booking is made
    once; `cancel()` and leaving the loop stop the kept turn. Before, `BookingClient` sent neither kind with
    keep_running and the cut failed the turn."""
    prop = await create_property(aws.dynamodb, table, name=f"Studio n{uuid.uuid4().hex[:8]}")
    tokens = await emulator_sign_in(typing_gateway.devstack)
    config = tmp_path / "keep-running.json"
    config.write_text(
        json.dumps(
            {
                "target": typing_gateway.target,
                "accessToken": tokens.access_token,
                "propertyName": prop.name,
                "stay": f"{days_ahead(150).isoformat()} to {days_ahead(152).isoformat()}",
            }
        )
    )
    code, out, err = await run_to_exit(
        str(TSX),
        "--test",
        "--test-reporter=spec",
        "tests/keep-running.test.ts",
        env={"KEEP_RUNNING_CONFIG": str(config), "NODE_NO_WARNINGS": "1"},
        cwd=NODE_CLIENT,
        timeout=120,
    )
    assert code == 0, f"{out}\n{err}"[-8000:]
    assert "pass 3" in out, out

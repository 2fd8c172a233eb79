"""The README's client recipes work as written: the Python example, and `buf curl` for every RPC.

The `buf curl` block runs step by step through bash against the test gateway, with the values each step
answered (login id, code, tokens, ids) passed on as the README's shell variables. The address, the email, the
property, the dates and the request id are swapped for the test's own. grpcurl is not installed here, so its
block is checked for covering the same RPCs with the same bodies and headers.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.rpc import error_details_pb2

from booking.v1 import auth_pb2, chat_pb2, reservations_pb2
from gateway.domain import Property
from tests.support.buf import BUF
from tests.support.gateway import RunningGateway
from tests.support.identity import unique_email
from tests.support.interactive import Interactive
from tests.support.processes import run_to_exit
from tests.support.reservations import create_property, days_ahead

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BUF_COMMAND = "npx buf curl --protocol grpc --http2-prior-knowledge"
CONTRACT = {
    f"{service.full_name}/{method.name}"
    for module in (auth_pb2, chat_pb2, reservations_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
}


def section(heading: str) -> str:
    start = README.index(heading)
    end = README.find("\n#", start + len(heading))
    return README[start : end if end != -1 else len(README)]


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def logical_lines(block: str) -> list[str]:
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def shell_recipes() -> tuple[list[str], list[str]]:
    buf_block, grpcurl_block = fenced(section("### Every RPC from the shell"), "sh")
    return logical_lines(buf_block), logical_lines(grpcurl_block)


def events_of(output: str) -> list[dict[str, Any]]:
    decoder, events, position = json.JSONDecoder(), [], 0
    while position < len(output.rstrip()):
        while output[position].isspace():
            position += 1
        message, position = decoder.raw_decode(output, position)
        events.append(message["event"])
    return events


def request_shape(args: list[str]) -> tuple[str, tuple[str, ...]]:
    """The -d body and the -H headers of a command line."""
    body = next((args[i + 1] for i, arg in enumerate(args) if arg == "-d"), "")
    headers = tuple(args[i + 1] for i, arg in enumerate(args) if arg == "-H")
    return body, headers


def test_the_shell_recipes_cover_every_rpc_with_buf_curl_and_grpcurl_alike() -> None:
    buf_lines, grpcurl_lines = shell_recipes()
    assert buf_lines[:2] == ["GW=127.0.0.1:50051", f'BUF="{BUF_COMMAND}"']
    buf_calls: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for line in buf_lines:
        if line.startswith("$BUF") and "--list-methods" not in line:
            args = shlex.split(line)
            method = args[-1].removeprefix("http://$GW/")
            buf_calls.setdefault(method, []).append(request_shape(args))
    grpcurl_calls: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for line in grpcurl_lines:
        if line.startswith("grpcurl") and not line.endswith(" list"):
            args = shlex.split(line)
            assert (args[1], args[-2]) == ("-plaintext", "$GW"), line
            grpcurl_calls.setdefault(args[-1], []).append(request_shape(args))
    assert CONTRACT | {"grpc.health.v1.Health/Check"} == set(buf_calls)
    assert buf_calls == grpcurl_calls


async def test_the_buf_curl_recipes_run_as_written(gateway: RunningGateway) -> None:
    prop: Property = await create_property(gateway.app.clients.dynamodb, gateway.devstack.endpoints.table_name)
    email = unique_email("readme")
    check_in, check_out = days_ahead(440), days_ahead(443)
    swaps = {
        "jane@example.com": email,
        '"harbor-loft"': f'"{prop.property_id}"',
        "2027-03-15": check_in.isoformat(),
        "2027-03-18": check_out.isoformat(),
        "jane-booking-0001": f"readme-{uuid.uuid4().hex[:12]}",
    }
    env = {"GW": gateway.target, "BUF": f"{BUF} curl --protocol grpc --http2-prior-knowledge --timeout 20s"}
    called: list[str] = []
    buf_lines, _ = shell_recipes()
    for line in buf_lines:
        if not line.startswith("$BUF"):
            continue
        for old, new in swaps.items():
            line = line.replace(old, new)
        code, out, err = await run_to_exit("bash", "-c", line, env=env, timeout=60)
        assert code == 0, f"{line}\n{err}"
        if "--list-methods" in line:
            assert set(out.split()) >= CONTRACT
            continue
        method = shlex.split(line)[-1].removeprefix("http://$GW/").split(".")[-1]  # like "ChatService/Chat"
        called.append(method)
        if method == "ChatService/Chat":
            events = events_of(out)
            started = events[0]["sessionStarted"]
            assert "turnComplete" in events[-1]
            assert started.get("authenticated", False) == ("authorization" in line)
            env["SESSION_ID"] = started["sessionId"]
            assert ("resumeToken" in started) == ("keep_running" in line)
            if "resumeToken" in started:
                env["RESUME_TOKEN"] = started["resumeToken"]
            continue
        if method == "ChatService/ResumeChat":
            events = events_of(out)
            assert events[0]["sequence"] == "2"
            assert "turnComplete" in events[-1]
            continue
        answer = json.loads(out)
        if method == "Health/Check":
            assert answer == {"status": "SERVING"}
        elif method == "ReservationService/ListProperties":
            assert prop.property_id in {p["propertyId"] for p in answer["properties"]}
        elif method == "ReservationService/CheckAvailability":
            assert answer["available"] is True
        elif method == "AuthService/InitiateLogin":
            env["LOGIN_ID"] = answer["loginId"]
            env["CODE"] = await gateway.devstack.mailbox.wait_for_code(email)
        elif method == "AuthService/VerifyOtp":
            env["TOKEN"] = answer["tokenDelivery"]["accessToken"]
            env["REFRESH_TOKEN"] = answer["tokenDelivery"]["refreshToken"]
            assert answer["tokenDelivery"]["email"] == email
        elif method == "AuthService/RefreshSession":
            assert answer["accessToken"] != env["TOKEN"]
            env["TOKEN"] = answer["accessToken"]
        elif method == "ReservationService/CreateReservation":
            env["RESERVATION_ID"] = answer["reservation"]["reservationId"]
            assert answer["reservation"]["checkIn"] == check_in.isoformat()
        elif method == "ReservationService/ListReservations":
            assert [r["reservationId"] for r in answer["reservations"]] == [env["RESERVATION_ID"]]
        elif method == "ReservationService/GetReservation":
            assert answer["reservation"]["status"] == "RESERVATION_STATUS_CONFIRMED"
        elif method == "ReservationService/CancelReservation":
            assert answer["reservation"]["status"] == "RESERVATION_STATUS_CANCELLED"
        elif method in ("AuthService/SignOut", "ChatService/CancelTurn"):
            assert answer == {}  # CancelTurn: the turn had ended ("cancelled": false)
    assert {m.rsplit(".", 1)[-1] for m in CONTRACT} | {"Health/Check"} == set(called)
    # Signed out: the access token of the recipes is refused from now on.
    code, _, err = await run_to_exit(
        "bash",
        "-c",
        '$BUF -H "authorization: Bearer $TOKEN" -d "{}" http://$GW/booking.v1.ReservationService/ListReservations',
        env=env,
    )
    assert code != 0
    refused = json.loads(err)
    assert refused["code"] == "unauthenticated"
    (detail,) = refused["details"]
    assert detail["type"] == "google.rpc.ErrorInfo"
    assert error_details_pb2.ErrorInfo.FromString(base64.b64decode(detail["value"])).reason == "TOKEN_REVOKED"


@pytest.mark.parametrize("heading", ["### Python: the `booking_client` library"])
async def test_the_python_example_runs(gateway: RunningGateway, tmp_path: Path, heading: str) -> None:
    (example,) = fenced(section(heading), "python")
    script = tmp_path / "example.py"
    script.write_text(example.replace('"127.0.0.1:50051"', f'"{gateway.target}"'))
    email = unique_email("example")
    run = await Interactive.start(sys.executable, str(script), env={"XDG_CONFIG_HOME": str(tmp_path / "config")})
    try:
        await run.expect("email: ")
        run.send(email)
        await run.expect("code sent to ")
        run.send(await gateway.devstack.mailbox.wait_for_code(email))
        assert await run.wait() == 0, run.output
    finally:
        await run.stop()
    assert "Let me check March 15" in run.output
    assert run.output.rstrip().endswith("0 reservations")
    assert (tmp_path / "config" / "booking-gateway" / "session.json").exists()

"""Header bytes that are not UTF-8, on both faces of a real gateway process: a coded answer with ErrorInfo and a
request id, an access-log line, and no log line anywhere (ours or a library's) carrying the authorization value."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import pytest
from google.rpc import error_details_pb2, status_pb2

from tests.support.gateway import RunningGateway
from tests.support.h2raw import frame, raw_grpc_call
from tests.support.identity import emulator_sign_in
from tests.support.processes import GatewayProcess, start_gateway

LIST_RESERVATIONS = "/booking.v1.ReservationService/ListReservations"
CHECK_AVAILABILITY = "/booking.v1.ReservationService/CheckAvailability"


@pytest.fixture(scope="module")
async def process() -> AsyncIterator[GatewayProcess]:
    """A `gateway serve` process of its own, logging at DEBUG so that every library's lines are there to scan."""
    gateway = await start_gateway("--log-level", "DEBUG")
    try:
        yield gateway
    finally:
        await gateway.stop()


def pieces(secret: str, size: int = 20) -> set[str]:
    """Every `size`-character piece of `secret`."""
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def unpadded_b64(text: bytes | str) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64decode(data + b"=" * (-len(data) % 4))


def dechunk(body: bytes) -> bytes:
    """The content of an HTTP/1.1 chunked body."""
    content = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        content += rest[:size]
        body = rest[size + 2 :]
    return content


def reason_in(details: bytes) -> str:
    """The ErrorInfo reason in a `grpc-status-details-bin` value."""
    status = status_pb2.Status.FromString(unpadded_b64(details))
    for item in status.details:
        info = error_details_pb2.ErrorInfo()
        if item.Unpack(info):
            return str(info.reason)
    return ""


async def test_grpc_face_a_non_utf8_authorization_is_refused_and_never_logged(
    process: GatewayProcess, gateway: RunningGateway
) -> None:
    token = (await emulator_sign_in(gateway.devstack)).access_token
    answer = await raw_grpc_call(
        process.port,
        LIST_RESERVATIONS,
        frame(b""),
        headers=[(b"authorization", b"Bearer " + token.encode() + b"\xff"), (b"x-request-id", b"bad-bytes-1")],
    )
    assert answer.grpc_status == 16  # UNAUTHENTICATED
    details = answer.header(b"grpc-status-details-bin")
    assert details is not None
    assert reason_in(details) == "TOKEN_MALFORMED"
    # The access log line of that call has been written once the answer is back; then scan everything printed.
    await process.printed(lambda: True if any("bad-bytes-1" in line for line in process.stderr_lines) else None)
    output = "\n".join(process.stdout_lines + process.stderr_lines)
    leaked = {piece for piece in pieces(token) if piece in output}
    assert not leaked, f"{len(leaked)} pieces of the token were logged"
    assert "\\xff" not in output


async def test_grpc_face_non_utf8_bytes_in_another_header_still_get_an_answer(process: GatewayProcess) -> None:
    answer = await raw_grpc_call(
        process.port, CHECK_AVAILABILITY, frame(b""), headers=[(b"x-custom", b"caf\xe9"), (b"x-request-id", b"bad-2")]
    )
    # Reached the gateway: a coded answer (the empty request is invalid), not a crash or a reset.
    assert answer.grpc_status == 3  # INVALID_ARGUMENT
    assert answer.header(b"grpc-status-details-bin") is not None


@pytest.mark.parametrize(
    ("name", "expected_code", "expected_reason"),
    [
        (b"authorization", "unauthenticated", "TOKEN_MALFORMED"),
        (b"x-custom", "invalid_argument", "MALFORMED_REQUEST"),
    ],
)
async def test_web_face_non_utf8_header_bytes_get_a_coded_connect_error_with_a_request_id(
    process: GatewayProcess, name: bytes, expected_code: str, expected_reason: str
) -> None:
    url = await process.web_url()
    value = b"Bearer eyJhbGciOiJSUzI1NiJ9.secretsecretsecretsecret.sig\xff" if name == b"authorization" else b"caf\xe9"
    # HTTP clients refuse to send such bytes; a raw HTTP/1.1 request does what a hostile client would.
    host, _, port = url.split("/")[2].partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b"{}"
    writer.write(
        b"POST /booking.v1.ReservationService/ListReservations HTTP/1.1\r\n"
        + f"Host: {host}:{port}\r\n".encode()
        + b"Content-Type: application/json\r\nConnect-Protocol-Version: 1\r\n"
        + name
        + b": "
        + value
        + b"\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    assert " 500 " not in status_line
    assert headers.get("x-request-id")
    error = json.loads(dechunk(payload) if "chunked" in headers.get("transfer-encoding", "") else payload)
    assert error["code"] == expected_code
    reasons = [
        error_details_pb2.ErrorInfo.FromString(unpadded_b64(d["value"])).reason
        for d in error.get("details", [])
        if d.get("type") == "google.rpc.ErrorInfo"
    ]
    assert expected_reason in reasons
    request_id = headers["x-request-id"]
    await process.printed(
        lambda: True if any(request_id in line and '"call"' in line for line in process.stderr_lines) else None
    )
    assert "secretsecretsecret" not in "\n".join(process.stdout_lines + process.stderr_lines)

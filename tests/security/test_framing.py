"""Broken framing on both faces of the real gateway: what reaches gateway code is answered with a status and an
ErrorInfo reason, never OK; the few cases grpc core answers before the gateway sees the call are pinned here with
the codes it gives (docs/security.md lists them)."""

from __future__ import annotations

import base64
import json
import struct

import aiohttp
import pytest
from google.rpc import error_details_pb2, status_pb2

from booking.v1 import reservations_pb2 as pb
from gateway.testing import CONNECT_STREAM_HEADERS, envelopes
from tests.support.gateway import RunningGateway
from tests.support.h2raw import RawAnswer, frame, raw_grpc_call

CHECK_AVAILABILITY = "/booking.v1.ReservationService/CheckAvailability"
LIST_PROPERTIES = "/booking.v1.ReservationService/ListProperties"
CHAT = "/booking.v1.ChatService/Chat"
CHAT_REQUEST = b"\x12\x05hello"  # ChatRequest(message="hello")


def reason(answer: RawAnswer) -> str:
    details = answer.header(b"grpc-status-details-bin")
    assert details is not None, answer
    status = status_pb2.Status.FromString(base64.b64decode(details + b"=" * (-len(details) % 4)))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return str(info.reason)


@pytest.mark.parametrize(
    ("path", "body", "code", "expected_reason"),
    [
        (CHECK_AVAILABILITY, frame(b"\xff\xff\xff"), 3, "MALFORMED_REQUEST"),
        # A compression flag grpc does not know: core hands over an empty message, which the RPC refuses.
        (CHECK_AVAILABILITY, frame(b"\x0a\x01x", compressed=2), 3, "INVALID_ARGUMENT"),
        ("/booking.v1.ReservationService/NoSuchMethod", frame(b""), 12, "METHOD_NOT_FOUND"),
        ("/no.such.Service/Call", frame(b""), 12, "METHOD_NOT_FOUND"),
    ],
    ids=["undecodable", "unknown-compression-flag", "unknown-method", "unknown-service"],
)
async def test_grpc_face_framing_that_reaches_the_gateway_gets_a_status_and_reason(
    gateway: RunningGateway, path: str, body: bytes, code: int, expected_reason: str
) -> None:
    answer = await raw_grpc_call(gateway.server.port, path, body)
    assert answer.grpc_status == code
    assert reason(answer) == expected_reason
    assert answer.header(b"x-request-id")


async def test_grpc_face_framing_grpc_core_answers_itself(gateway: RunningGateway) -> None:
    port = gateway.server.port
    # A compressed message without a grpc-encoding: core refuses it (INTERNAL, no details) before any handler.
    compressed = await raw_grpc_call(port, LIST_PROPERTIES, frame(b"", compressed=1))
    assert compressed.grpc_status == 13
    assert compressed.header(b"grpc-status-details-bin") is None
    # A unary request with no complete message (none, a cut length prefix, a cut message): core never hands the call
    # over; it ends at the caller's deadline.
    for body in (b"", b"\x00\x00", struct.pack(">BI", 0, 100) + b"\x0a\x01x"):
        cut = await raw_grpc_call(port, LIST_PROPERTIES, body, headers=[(b"grpc-timeout", b"500m")])
        assert cut.grpc_status == 4  # DEADLINE_EXCEEDED
    # Two messages on a unary request: core reads the first and drops the rest (grpc-go and grpc-java refuse it);
    # the gateway answers the first, as any grpc C-core server does.
    two = await raw_grpc_call(port, LIST_PROPERTIES, frame(b"") + frame(b""))
    assert two.grpc_status == 0
    assert pb.ListPropertiesResponse.FromString(two.data[5:]).properties


WEB_CASES = {
    "two-messages": frame(CHAT_REQUEST) + frame(CHAT_REQUEST),
    "no-message": b"",
    "cut-prefix": b"\x00\x00",
    "cut-message": struct.pack(">BI", 0, 100) + CHAT_REQUEST,
    "compressed-without-encoding": frame(CHAT_REQUEST, compressed=1),
    "unknown-flag": frame(CHAT_REQUEST, compressed=2),
    "undecodable": frame(b"\xff\xff\xff"),
}


@pytest.mark.parametrize("case", sorted(WEB_CASES))
@pytest.mark.parametrize("protocol", ["grpc-web", "connect"])
async def test_web_face_every_broken_frame_gets_malformed_request_never_ok(
    gateway: RunningGateway, protocol: str, case: str
) -> None:
    headers = {"content-type": "application/grpc-web+proto"} if protocol == "grpc-web" else dict(CONNECT_STREAM_HEADERS)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.post(gateway.web_url + CHAT, data=WEB_CASES[case], headers=headers) as response,
    ):
        assert response.headers.get("x-request-id")
        received = [item async for item in envelopes(response.content)]
    assert not [payload for flags, payload in received if flags == 0], "no message may be answered"
    if protocol == "grpc-web":
        trailer = next(payload for flags, payload in received if flags & 0x80)
        fields = dict(line.split(": ", 1) for line in trailer.decode().strip().split("\r\n"))
        assert fields["grpc-status"] == "3", fields
        info = _error_info(fields["grpc-status-details-bin"], wrapped=True)
    else:
        end = json.loads(next(payload for flags, payload in received if flags & 0x02))
        assert end["error"]["code"] == "invalid_argument", end
        info = _error_info(end["error"]["details"][0]["value"], wrapped=False)
    assert info.reason == "MALFORMED_REQUEST"


def _error_info(text: str, *, wrapped: bool) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo from a `grpc-status-details-bin` value (a whole Status) or a Connect detail (just the info)."""
    data = base64.b64decode(text + "=" * (-len(text) % 4))
    info = error_details_pb2.ErrorInfo()
    if wrapped:
        assert status_pb2.Status.FromString(data).details[0].Unpack(info)
    else:
        info.ParseFromString(data)
    return info

"""The real gateway's error mapping for calls that never reach a servicer."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from tests.support.calls import SERVING, health_status, raw_stream, raw_unary, trailers
from tests.support.gateway import RunningGateway
from tests.support.status import reason_of


async def assert_still_serving(gateway: RunningGateway) -> None:
    assert await health_status(gateway.channel) == SERVING


async def test_an_unknown_rpc_is_unimplemented_with_reason_method_not_found(gateway: RunningGateway) -> None:
    for method in ("/booking.v1.AuthService/StealTokens", "/no.such.Service/Call"):
        with pytest.raises(aio.AioRpcError) as caught:
            await raw_unary(gateway.channel, method, b"")
        assert reason_of(caught.value) == (grpc.StatusCode.UNIMPLEMENTED, "METHOD_NOT_FOUND")
    await assert_still_serving(gateway)


async def test_undecodable_request_bytes_are_invalid_argument_with_reason_malformed_request(
    gateway: RunningGateway,
) -> None:
    # 0xff... is not a valid protobuf tag/varint sequence.
    for method in ("/booking.v1.ReservationService/ListProperties", "/booking.v1.ChatService/Chat"):
        with pytest.raises(aio.AioRpcError) as caught:
            if method.endswith("Chat"):
                await raw_stream(gateway.channel, method, b"\xff\xff\xff\xff")
            else:
                await raw_unary(gateway.channel, method, b"\xff\xff\xff\xff")
        assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    await assert_still_serving(gateway)


async def test_a_request_id_is_echoed_in_the_trailers(gateway: RunningGateway) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await raw_unary(gateway.channel, "/no.such.Service/Call", b"", metadata=(("x-request-id", "trace-abc-123"),))
    assert ("x-request-id", "trace-abc-123") in trailers(caught.value)

"""Identifiers and dates are checked whole: a valid value with a trailing newline (which `$` in a pattern would let
through) is refused like any other malformed value, on every RPC that takes one."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc import aio

from booking.v1 import chat_pb2, reservations_pb2_grpc
from booking.v1 import reservations_pb2 as pb
from gateway.adapters.aws import AwsClients
from gateway.calls import new_request_id
from tests.support.chat import stub as chat_stub
from tests.support.gateway import RunningGateway
from tests.support.identity import emulator_sign_in
from tests.support.reservations import create_property, days_ahead
from tests.support.reservations import new_request_id as booking_request_id
from tests.support.status import field_violations, reason_of

INVALID = (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")


async def refused(call: Any) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value


def test_a_request_id_with_a_trailing_newline_is_replaced_by_a_new_one() -> None:
    assert new_request_id("trace-abc-123") == "trace-abc-123"
    assert new_request_id("abcdefgh\n") != "abcdefgh\n"
    assert "\n" not in new_request_id("abcdefgh\n")


async def test_dates_ids_and_request_ids_with_a_trailing_newline_are_invalid_argument(
    gateway: RunningGateway, aws: AwsClients, table: str
) -> None:
    prop = await create_property(aws.dynamodb, table, capacity=2)
    tokens = await emulator_sign_in(gateway.devstack)
    bearer = tokens.bearer()
    stub = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    check_in, check_out = days_ahead(20).isoformat(), days_ahead(22).isoformat()

    availability = await refused(
        stub.CheckAvailability(
            pb.CheckAvailabilityRequest(property_id=prop.property_id, check_in=check_in + "\n", check_out=check_out),
            timeout=10,
        )
    )
    assert reason_of(availability) == INVALID
    assert "check_in" in field_violations(availability)

    booking = await refused(
        stub.CreateReservation(
            pb.CreateReservationRequest(
                property_id=prop.property_id,
                check_in=check_in,
                check_out=check_out,
                guests=1,
                request_id=booking_request_id() + "\n",
            ),
            metadata=bearer,
            timeout=10,
        )
    )
    assert reason_of(booking) == INVALID
    assert "request_id" in field_violations(booking)

    made = await stub.CreateReservation(
        pb.CreateReservationRequest(
            property_id=prop.property_id,
            check_in=check_in,
            check_out=check_out,
            guests=1,
            request_id=booking_request_id(),
        ),
        metadata=bearer,
        timeout=10,
    )
    reservation_id = made.reservation.reservation_id
    # Reservation ids are normalised on purpose (spaces around them trimmed, letters upper-cased: a pasted id
    # works), so a trailing newline names the same reservation; inside the id, everything has to match.
    padded = await stub.GetReservation(
        pb.GetReservationRequest(reservation_id=reservation_id.lower() + "\n"), metadata=bearer, timeout=10
    )
    assert padded.reservation.reservation_id == reservation_id
    broken = reservation_id[:-1] + "\n" + reservation_id[-1]
    for call in (
        stub.GetReservation(pb.GetReservationRequest(reservation_id=broken), metadata=bearer, timeout=10),
        stub.CancelReservation(pb.CancelReservationRequest(reservation_id=broken), metadata=bearer, timeout=10),
    ):
        assert reason_of(await refused(call)) == INVALID
    # Nothing was cancelled by the refused call.
    kept = await stub.GetReservation(
        pb.GetReservationRequest(reservation_id=reservation_id), metadata=bearer, timeout=10
    )
    assert kept.reservation.status == pb.RESERVATION_STATUS_CONFIRMED


async def test_a_chat_session_id_with_a_trailing_newline_is_invalid_argument(gateway: RunningGateway) -> None:
    started = chat_stub(gateway.channel).Chat(chat_pb2.ChatRequest(message="hello"), timeout=30)
    session_id = ""
    async for response in started:
        if response.event.HasField("session_started"):
            session_id = response.event.session_started.session_id
    assert session_id
    call = chat_stub(gateway.channel).Chat(chat_pb2.ChatRequest(session_id=session_id + "\n", message="hi"), timeout=30)
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert reason_of(caught.value) == INVALID
    assert "session_id" in field_violations(caught.value)

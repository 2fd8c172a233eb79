"""One today for the whole gateway: stays are judged by the date in `--chat-time-zone`, not UTC's, over the wire.

Two gateways with their clocks fixed where the zone's date and UTC's differ: in Los Angeles it is still Tuesday
March 9, 2027 at 20:00 while UTC is already Wednesday; in Tokyo it is already Wednesday at 05:00 while UTC is
still Tuesday. Both book on properties of their own, so the fixed dates collide with nothing.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from booking.v1 import reservations_pb2 as pb
from booking.v1 import reservations_pb2_grpc
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.domain import Property
from tests.support.chat import chat, decide
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.identity import Tokens, emulator_sign_in
from tests.support.reservations import create_property, new_request_id
from tests.support.status import field_violations, reason_of

LOS_ANGELES_EVENING = datetime.datetime(2027, 3, 10, 4, 0, tzinfo=datetime.UTC)  # Tuesday 20:00 there
TOKYO_MORNING = datetime.datetime(2027, 3, 9, 20, 0, tzinfo=datetime.UTC)  # Wednesday 05:00 there
TUESDAY, WEDNESDAY = datetime.date(2027, 3, 9), datetime.date(2027, 3, 10)


@pytest.fixture(scope="module")
async def los_angeles(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    zoned = settings.replace(chat_time_zone="America/Los_Angeles")
    async with running_gateway(devstack, zoned, clock=lambda: LOS_ANGELES_EVENING) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def tokyo(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    zoned = settings.replace(chat_time_zone="Asia/Tokyo")
    async with running_gateway(devstack, zoned, clock=lambda: TOKYO_MORNING) as gateway:
        yield gateway


@pytest.fixture
async def prop(aws: AwsClients, table: str) -> Property:
    """A property of this test's own, with a name the scripted agent can be told."""
    return await create_property(aws.dynamodb, table, name=f"Studio z{uuid.uuid4().hex[:8]}")


def booking(prop: Property, check_in: datetime.date) -> pb.CreateReservationRequest:
    check_out = check_in + datetime.timedelta(days=1)
    return pb.CreateReservationRequest(
        property_id=prop.property_id,
        check_in=check_in.isoformat(),
        check_out=check_out.isoformat(),
        guests=1,
        request_id=new_request_id(),
    )


async def book(gateway: RunningGateway, guest: Tokens, request: pb.CreateReservationRequest) -> pb.Reservation:
    stub = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    return (await stub.CreateReservation(request, metadata=guest.bearer(), timeout=20)).reservation


async def test_tonight_in_a_zone_behind_utc_is_bookable_when_utc_is_already_tomorrow(
    los_angeles: RunningGateway, prop: Property
) -> None:
    guest = await emulator_sign_in(los_angeles.devstack)

    made = await book(los_angeles, guest, booking(prop, TUESDAY))

    assert (made.check_in, made.status) == (TUESDAY.isoformat(), pb.RESERVATION_STATUS_CONFIRMED)
    stub = reservations_pb2_grpc.ReservationServiceStub(los_angeles.channel)
    free = await stub.CheckAvailability(
        pb.CheckAvailabilityRequest(
            property_id=prop.property_id, check_in=TUESDAY.isoformat(), check_out=WEDNESDAY.isoformat(), guests=1
        ),
        timeout=10,
    )
    assert not free.available  # judged by Tuesday too: the night is just taken, not "in the past"


async def test_yesterday_in_a_zone_ahead_of_utc_is_refused_though_it_is_utcs_today(
    tokyo: RunningGateway, prop: Property
) -> None:
    guest = await emulator_sign_in(tokyo.devstack)

    with pytest.raises(aio.AioRpcError) as caught:
        await book(tokyo, guest, booking(prop, TUESDAY))

    assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert field_violations(caught.value) == {"check_in": "must not be in the past (today is 2027-03-10 in Asia/Tokyo)"}
    made = await book(tokyo, guest, booking(prop, WEDNESDAY))
    assert made.check_in == WEDNESDAY.isoformat()


async def test_the_chat_books_tonight_in_a_zone_behind_utc_as_the_rpc_does(
    los_angeles: RunningGateway, prop: Property
) -> None:
    guest = await emulator_sign_in(los_angeles.devstack)
    channel = los_angeles.channel

    available = await chat(channel, "what's available today for one night?", metadata=guest.bearer())
    assert [(t.name, t.ok) for t in available.tools] == [("check_availability", True)], available.text
    assert prop.name in available.text
    asked = await chat(channel, f"book the {prop.name} for 1 guest", available.session_id, guest.bearer())
    assert asked.approval is not None, asked.text
    booked = await decide(channel, asked, guest.bearer())

    assert [(t.name, t.ok) for t in booked.tools] == [("create_reservation", True)], booked.text
    reservation_id = booked.tools[0].summary.split()[1].rstrip(":")
    stub = reservations_pb2_grpc.ReservationServiceStub(channel)
    found = await stub.GetReservation(
        pb.GetReservationRequest(reservation_id=reservation_id), metadata=guest.bearer(), timeout=10
    )
    assert (found.reservation.property_id, found.reservation.check_in) == (prop.property_id, TUESDAY.isoformat())

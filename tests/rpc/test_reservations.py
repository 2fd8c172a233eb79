"""ReservationService over the wire: the real gateway on loopback, the emulator behind it.

PUBLIC RPCs (ListProperties, CheckAvailability) need no bearer. Each test uses a property of its own and dates
relative to today.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc import aio

from booking.v1 import reservations_pb2 as pb
from booking.v1 import reservations_pb2_grpc
from gateway.app import gateway_server, open_app
from gateway.config import Settings
from gateway.devstack.bootstrap import DEMO_PROPERTIES
from gateway.domain import Property
from tests.support.buf import buf_curl, url
from tests.support.faults import FaultyDynamo
from tests.support.gateway import RunningGateway
from tests.support.reservations import create_property, days_ahead, new_request_id, new_sub, stay
from tests.support.status import field_violations, reason_of, retry_delay_seconds

INVALID = (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
if TYPE_CHECKING:
    Stub = reservations_pb2_grpc.ReservationServiceAsyncStub


@pytest.fixture
def stub(gateway: RunningGateway) -> Stub:
    return reservations_pb2_grpc.ReservationServiceStub(gateway.channel)


@pytest.fixture
async def prop(gateway: RunningGateway) -> Property:
    return await create_property(gateway.app.clients.dynamodb, gateway.devstack.endpoints.table_name, capacity=3)


def day(n: int) -> str:
    return days_ahead(n).isoformat()


async def test_list_properties_answers_every_demo_property_by_name(
    stub: Stub,
) -> None:
    answer = await stub.ListProperties(pb.ListPropertiesRequest(), timeout=10)
    by_id = {p.property_id: p for p in answer.properties}
    for demo in DEMO_PROPERTIES:
        got = by_id[demo.property_id]
        assert (got.name, got.description, got.capacity, got.nightly_rate_cents, got.currency) == (
            demo.name,
            demo.description,
            demo.capacity,
            demo.nightly_rate_cents,
            demo.currency,
        )
    names = [p.name for p in answer.properties]
    assert names == sorted(names)


async def test_check_availability_of_a_free_stay(stub: Stub, prop: Property) -> None:
    answer = await stub.CheckAvailability(
        pb.CheckAvailabilityRequest(property_id=prop.property_id, check_in=day(30), check_out=day(33)), timeout=10
    )
    assert answer.available
    assert answer.property.property_id == prop.property_id
    assert [(n.date, n.available) for n in answer.nights] == [(day(30), True), (day(31), True), (day(32), True)]
    assert answer.total_cents == 3 * prop.nightly_rate_cents
    assert answer.currency == "USD"


async def test_check_availability_shows_booked_nights_and_capacity(
    gateway: RunningGateway, stub: Stub, prop: Property
) -> None:
    await gateway.app.reservations.create_reservation(new_sub(), stay(prop, 31, 1), request_id=new_request_id())
    answer = await stub.CheckAvailability(
        pb.CheckAvailabilityRequest(property_id=prop.property_id, check_in=day(30), check_out=day(33), guests=2),
        timeout=10,
    )
    assert not answer.available
    assert [(n.date, n.available) for n in answer.nights] == [(day(30), True), (day(31), False), (day(32), True)]
    over = await stub.CheckAvailability(
        pb.CheckAvailabilityRequest(property_id=prop.property_id, check_in=day(40), check_out=day(41), guests=4),
        timeout=10,
    )
    assert not over.available
    assert [n.available for n in over.nights] == [True]


BAD_REQUESTS: list[tuple[str, dict[str, Any], set[str]]] = [
    ("no dates", {"check_in": "", "check_out": ""}, {"check_in", "check_out"}),
    ("not a date", {"check_in": "15/03/2026", "check_out": "tomorrow"}, {"check_in", "check_out"}),
    ("not a calendar date", {"check_in": "2031-02-30"}, {"check_in"}),
    ("week date", {"check_in": "2031-W11-1"}, {"check_in"}),
    ("check-out on check-in", {"check_in": 10, "check_out": 10}, {"check_out"}),
    ("check-out before check-in", {"check_in": 10, "check_out": 8}, {"check_out"}),
    ("31 nights", {"check_in": 10, "check_out": 41}, {"check_out"}),
    ("in the past", {"check_in": -1, "check_out": 1}, {"check_in"}),
    ("beyond two years", {"check_in": 740, "check_out": 742}, {"check_out"}),
    ("negative guests", {"guests": -1}, {"guests"}),
    ("no property", {"property_id": ""}, {"property_id"}),
    (
        "everything",
        {"property_id": "", "check_in": -3, "check_out": -4, "guests": -2},
        {"property_id", "check_in", "check_out", "guests"},
    ),
]


def _request(prop: Property, fields: dict[str, Any]) -> pb.CheckAvailabilityRequest:
    values: dict[str, Any] = {"property_id": prop.property_id, "check_in": day(10), "check_out": day(12), "guests": 1}
    # Integers given for the dates are days from today.
    values.update({k: day(v) if isinstance(v, int) and k.startswith("check") else v for k, v in fields.items()})
    return pb.CheckAvailabilityRequest(**values)


@pytest.mark.parametrize(("case", "fields", "named"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
async def test_bad_availability_requests_are_invalid_argument_with_field_violations(
    stub: Stub,
    prop: Property,
    case: str,
    fields: dict[str, Any],
    named: set[str],
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.CheckAvailability(_request(prop, fields), timeout=10)
    assert reason_of(caught.value) == INVALID
    assert set(field_violations(caught.value)) == named


async def test_an_unknown_property_is_not_found(stub: Stub) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.CheckAvailability(
            pb.CheckAvailabilityRequest(property_id="no-such-place", check_in=day(5), check_out=day(6)), timeout=10
        )
    assert reason_of(caught.value) == (grpc.StatusCode.NOT_FOUND, "PROPERTY_NOT_FOUND")


async def test_signed_in_rpcs_refuse_a_call_without_a_bearer(stub: Stub, prop: Property) -> None:
    calls: list[aio.UnaryUnaryCall[Any, Any]] = [
        stub.CreateReservation(
            pb.CreateReservationRequest(
                property_id=prop.property_id, check_in=day(5), check_out=day(6), guests=1, request_id=new_request_id()
            ),
            timeout=10,
        ),
        stub.ListReservations(pb.ListReservationsRequest(), timeout=10),
        stub.GetReservation(pb.GetReservationRequest(reservation_id="RES-22222222"), timeout=10),
        stub.CancelReservation(pb.CancelReservationRequest(reservation_id="RES-22222222"), timeout=10),
    ]
    for call in calls:
        with pytest.raises(aio.AioRpcError) as caught:
            await call
        assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


async def test_the_readme_buf_curl_recipes_work(gateway: RunningGateway, prop: Property) -> None:
    code, out, err = await buf_curl(gateway.target, url(gateway.target, "booking.v1.ReservationService/ListProperties"))
    assert code == 0, err
    assert "harbor-loft" in {p["propertyId"] for p in json.loads(out)["properties"]}
    code, out, err = await buf_curl(
        gateway.target,
        url(gateway.target, "booking.v1.ReservationService/CheckAvailability"),
        data={"property_id": prop.property_id, "check_in": day(30), "check_out": day(32), "guests": 2},
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["available"] is True
    assert [n["date"] for n in answer["nights"]] == [day(30), day(31)]
    assert int(answer["totalCents"]) == 2 * prop.nightly_rate_cents


async def test_a_throttling_dynamodb_is_unavailable_with_retry_info(
    gateway: RunningGateway, settings: Settings, prop: Property
) -> None:
    # A second gateway, built like the first, whose DynamoDB calls pass through a proxy that throttles them.
    devstack = gateway.devstack
    async with (
        FaultyDynamo(devstack.endpoints.endpoint_url) as proxy,
        open_app(
            settings,
            dataclasses.replace(devstack.endpoints.target, endpoint_url=proxy.url),
            trust_emulator_keys=True,
        ) as app,
        gateway_server(app, settings) as server,
        aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        throttled = reservations_pb2_grpc.ReservationServiceStub(channel)
        request = pb.CheckAvailabilityRequest(property_id=prop.property_id, check_in=day(30), check_out=day(31))
        proxy.inject("GetItem", "throttle", "throttle", "throttle")  # every attempt botocore makes
        with pytest.raises(aio.AioRpcError) as caught:
            await throttled.CheckAvailability(request, timeout=20)
        assert reason_of(caught.value) == (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")
        assert retry_delay_seconds(caught.value) == 1.0
        assert (await throttled.CheckAvailability(request, timeout=10)).available

"""The library's reservation calls against the real gateway: typed answers, typed errors, safe retries."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest

from booking.v1 import reservations_pb2 as pb
from booking_client import (
    BookingClient,
    FailedPrecondition,
    InvalidArgument,
    MemorySessionStore,
    NotFound,
    Unauthenticated,
    connect,
)
from gateway.app import gateway_server, open_app
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.domain import Property
from tests.support.faults import FaultyDynamo
from tests.support.gateway import RunningGateway
from tests.support.identity import emulator_sign_in
from tests.support.reservations import create_property, days_ahead
from tests.support.sessions import session_from


@pytest.fixture
async def prop(gateway: RunningGateway) -> Property:
    return await create_property(gateway.app.clients.dynamodb, gateway.devstack.endpoints.table_name, capacity=3)


@pytest.fixture
async def signed_in(gateway: RunningGateway, devstack: DevStack) -> AsyncIterator[BookingClient]:
    store = MemorySessionStore(session_from(await emulator_sign_in(devstack)))
    async with connect(gateway.target, tls=False, session_store=store) as client:
        yield client


async def test_a_signed_in_client_books_lists_reads_and_cancels(signed_in: BookingClient, prop: Property) -> None:
    names = {p.property_id: p.name for p in await signed_in.list_properties()}
    assert names["harbor-loft"] == "Harbor Loft"
    check_in, check_out = days_ahead(40), days_ahead(43)
    availability = await signed_in.check_availability(prop.property_id, check_in, check_out, guests=2)
    assert availability.available
    assert availability.total_cents == 3 * prop.nightly_rate_cents

    booked = await signed_in.create_reservation(prop.property_id, check_in, check_out, guests=2)
    assert booked.status == pb.RESERVATION_STATUS_CONFIRMED
    assert (booked.check_in, booked.check_out) == (check_in.isoformat(), check_out.isoformat())
    page = await signed_in.list_reservations()
    assert booked.reservation_id in [r.reservation_id for r in page.reservations]
    assert await signed_in.get_reservation(booked.reservation_id) == booked

    cancelled = await signed_in.cancel_reservation(booked.reservation_id)
    assert cancelled.status == pb.RESERVATION_STATUS_CANCELLED
    assert (await signed_in.get_reservation(booked.reservation_id)).status == pb.RESERVATION_STATUS_CANCELLED


async def test_the_same_request_id_books_once_and_a_new_call_gets_a_new_id(
    signed_in: BookingClient, prop: Property
) -> None:
    first = await signed_in.create_reservation(
        prop.property_id, days_ahead(50), days_ahead(52), 1, request_id="mine-12345"
    )
    again = await signed_in.create_reservation(
        prop.property_id, days_ahead(50), days_ahead(52), 1, request_id="mine-12345"
    )
    assert again.reservation_id == first.reservation_id
    # Without a request id each call is a new booking: the same nights are then taken.
    with pytest.raises(FailedPrecondition) as caught:
        await signed_in.create_reservation(prop.property_id, days_ahead(51), days_ahead(53), 1)
    assert caught.value.reason == "NIGHTS_TAKEN"
    assert caught.value.metadata["nights"] == days_ahead(51).isoformat()


async def test_errors_are_typed_with_reason_and_field_violations(signed_in: BookingClient, prop: Property) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await signed_in.check_availability(prop.property_id, "15 March", days_ahead(3))
    assert bad.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert bad.value.reason == "INVALID_ARGUMENT"
    assert "check_in" in bad.value.field_violations
    with pytest.raises(NotFound) as missing:
        await signed_in.check_availability("no-such-place", days_ahead(3), days_ahead(4))
    assert missing.value.reason == "PROPERTY_NOT_FOUND"
    with pytest.raises(NotFound) as unknown:
        await signed_in.get_reservation("RES-7K2Q9D4M")
    assert unknown.value.reason == "RESERVATION_NOT_FOUND"
    with pytest.raises(FailedPrecondition) as crowded:
        await signed_in.create_reservation(prop.property_id, days_ahead(60), days_ahead(61), guests=9)
    assert crowded.value.reason == "CAPACITY_EXCEEDED"


async def test_anonymous_clients_get_public_answers_and_token_missing_for_the_rest(
    client: BookingClient, prop: Property
) -> None:
    assert await client.list_properties()
    assert (await client.check_availability(prop.property_id, days_ahead(70), days_ahead(71))).available
    with pytest.raises(Unauthenticated) as caught:
        await client.create_reservation(prop.property_id, days_ahead(70), days_ahead(71), 1)
    assert caught.value.reason == "TOKEN_MISSING"


async def test_an_unconfirmed_booking_is_retried_once_with_the_same_request_id(
    gateway: RunningGateway, devstack: DevStack, settings: Settings, prop: Property
) -> None:
    # A gateway whose DynamoDB answers are lost: the booking is written, but neither its answer nor the read-back
    # that would confirm it arrive, so the gateway says UNAVAILABLE ("retry with the same request id"). The
    # client's retry finds the booking by its request id; a retry with a new id would find the nights taken.
    store = MemorySessionStore(session_from(await emulator_sign_in(devstack)))
    async with (
        FaultyDynamo(devstack.endpoints.endpoint_url) as proxy,
        open_app(
            settings, dataclasses.replace(devstack.endpoints.target, endpoint_url=proxy.url), trust_emulator_keys=True
        ) as app,
        gateway_server(app, settings) as server,
        connect(f"127.0.0.1:{server.port}", tls=False, session_store=store) as client,
    ):
        # A booking without faults shows how many reads (property, profile, ...) come before the transaction.
        first = await client.create_reservation(prop.property_id, days_ahead(84), days_ahead(85), 1)
        reads_before_write = proxy.seen[: proxy.seen.index("TransactWriteItems")].count("GetItem")
        proxy.seen.clear()
        proxy.inject("TransactWriteItems", "fail_after", "fail_after", "fail_after")  # every try botocore makes
        proxy.inject("GetItem", *["pass"] * reads_before_write, "throttle", "throttle", "throttle")
        booked = await client.create_reservation(prop.property_id, days_ahead(80), days_ahead(82), 2)
        assert proxy.pending("TransactWriteItems") == proxy.pending("GetItem") == 0
        assert proxy.seen.count("TransactWriteItems") == 4  # three lost tries, then the client's retry
        page = await client.list_reservations()
    assert sorted(r.reservation_id for r in page.reservations) == sorted([first.reservation_id, booked.reservation_id])
    assert (booked.check_in, booked.guests) == (days_ahead(80).isoformat(), 2)

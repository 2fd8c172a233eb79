"""The DynamoDB reservation store when DynamoDB throttles, fails or loses answers (faults injected at the wire).

The store talks to a loopback proxy in front of the emulator. Most tests use a client that makes one attempt
per call, so each injected fault is exactly what the store sees; the `retrying_store` uses the gateway's own
clients, whose botocore retries re-send a booking after a lost answer. Every outcome is checked against the
table itself.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import aioboto3
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError, EndpointConnectionError

from gateway.adapters.aws import AwsClients, AwsTarget, open_aws_clients
from gateway.adapters.dynamodb.reservation_store import DynamoReservationStore
from gateway.devstack import DevStack
from gateway.domain import Property, Reservation, ReservationId, ReservationStatus
from gateway.errors import UpstreamUnavailableError
from gateway.services.reservations import ReservationService
from tests.support.faults import FaultyDynamo
from tests.support.ports import refusing_port
from tests.support.reservations import create_property, guest_items, new_request_id, new_sub, night_locks, stay

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

BOOK = "TransactWriteItems"


@asynccontextmanager
async def single_attempt_client(target: AwsTarget) -> AsyncIterator[DynamoDBClient]:
    """A DynamoDB client like the gateway's, except that botocore never retries."""
    session = aioboto3.Session(
        aws_access_key_id=target.access_key_id,
        aws_secret_access_key=target.secret_access_key,
        region_name=target.region,
    )
    config = AioConfig(region_name=target.region, retries={"total_max_attempts": 1, "mode": "standard"})
    async with session.client("dynamodb", endpoint_url=target.endpoint_url, config=config) as client:
        yield client


@pytest.fixture
async def proxy(devstack: DevStack) -> AsyncIterator[FaultyDynamo]:
    async with FaultyDynamo(devstack.endpoints.endpoint_url) as running:
        yield running


@pytest.fixture
def proxied(devstack: DevStack, proxy: FaultyDynamo) -> AwsTarget:
    return dataclasses.replace(devstack.endpoints.target, endpoint_url=proxy.url)


@pytest.fixture
async def service(proxied: AwsTarget, table: str) -> AsyncIterator[ReservationService]:
    """The service on a store whose calls reach the emulator through the proxy, one attempt each."""
    async with single_attempt_client(proxied) as client:
        yield ReservationService(DynamoReservationStore(client, table))


@pytest.fixture
async def retrying_service(proxied: AwsTarget, table: str) -> AsyncIterator[ReservationService]:
    """The service on the gateway's own clients (botocore's standard retries), through the proxy."""
    async with open_aws_clients(proxied) as clients:
        yield ReservationService(DynamoReservationStore(clients.dynamodb, table))


@pytest.fixture
async def prop(aws: AwsClients, table: str) -> Property:
    return await create_property(aws.dynamodb, table)


async def _stored(aws: AwsClients, table: str, sub: str, prop: Property) -> tuple[int, set[str]]:
    """(items under the guest, reservation ids holding the property's nights)."""
    return len(await guest_items(aws.dynamodb, table, sub)), set(
        (await night_locks(aws.dynamodb, table, prop.property_id)).values()
    )


@pytest.mark.parametrize("fault", ["fail_after", "drop_after", "in_progress_after"])
async def test_an_applied_booking_whose_answer_was_lost_is_read_back_by_request_id(
    aws: AwsClients, table: str, proxy: FaultyDynamo, service: ReservationService, prop: Property, fault: str
) -> None:
    sub = new_sub()
    proxy.inject(BOOK, fault)
    made = await service.create_reservation(sub, stay(prop, 30, 2), request_id=new_request_id())
    assert proxy.pending(BOOK) == 0
    assert proxy.seen[proxy.seen.index(BOOK) + 1] == "GetItem"  # read back, not guessed
    assert made.status is ReservationStatus.CONFIRMED
    assert await service.get_reservation(sub, made.reservation_id) == made
    assert await _stored(aws, table, sub, prop) == (2, {made.reservation_id})


@pytest.mark.parametrize("fault", ["fail_after", "drop_after"])
async def test_a_booking_resent_by_botocore_after_a_lost_answer_is_booked_once(
    aws: AwsClients, table: str, proxy: FaultyDynamo, retrying_service: ReservationService, prop: Property, fault: str
) -> None:
    # botocore re-sends the applied transaction; the emulator refuses it (the request id item exists; real
    # DynamoDB would answer success for the same ClientRequestToken) and the store reads the booking back.
    sub = new_sub()
    proxy.inject(BOOK, fault)
    made = await retrying_service.create_reservation(sub, stay(prop, 30, 2), request_id=new_request_id())
    assert proxy.seen.count(BOOK) == 2
    assert await retrying_service.get_reservation(sub, made.reservation_id) == made
    assert await _stored(aws, table, sub, prop) == (2, {made.reservation_id})


async def test_a_booking_that_was_never_applied_is_unavailable_and_a_retry_books_once(
    aws: AwsClients, table: str, proxy: FaultyDynamo, service: ReservationService, prop: Property
) -> None:
    sub = new_sub()
    request_id = new_request_id()
    proxy.inject(BOOK, "fail_before")
    with pytest.raises(UpstreamUnavailableError) as caught:
        await service.create_reservation(sub, stay(prop, 30, 2), request_id=request_id)
    assert caught.value.retry_after_seconds == 1.0
    assert "GetItem" in proxy.seen[proxy.seen.index(BOOK) :]  # it looked before answering
    assert await _stored(aws, table, sub, prop) == (0, set())
    made = await service.create_reservation(sub, stay(prop, 30, 2), request_id=request_id)
    again = await service.create_reservation(sub, stay(prop, 30, 2), request_id=request_id)
    assert again == made
    assert await _stored(aws, table, sub, prop) == (2, {made.reservation_id})


async def test_a_throttled_booking_is_unavailable_with_a_retry_delay_and_writes_nothing(
    aws: AwsClients, table: str, proxy: FaultyDynamo, service: ReservationService, prop: Property
) -> None:
    sub = new_sub()
    proxy.inject(BOOK, "throttle")
    with pytest.raises(UpstreamUnavailableError) as caught:
        await service.create_reservation(sub, stay(prop, 30, 2), request_id=new_request_id())
    assert caught.value.reason == "UPSTREAM_UNAVAILABLE"
    assert caught.value.retry_after_seconds == 1.0
    assert isinstance(caught.value.__cause__, ClientError)
    assert await _stored(aws, table, sub, prop) == (0, set())


async def test_throttled_reads_are_unavailable_from_the_client_error(
    proxy: FaultyDynamo, service: ReservationService, prop: Property
) -> None:
    proxy.inject("GetItem", "throttle")
    with pytest.raises(UpstreamUnavailableError) as caught:
        await service.check_availability(stay(prop, 30, 2))
    assert isinstance(caught.value.__cause__, ClientError)
    assert caught.value.retry_after_seconds == 1.0
    assert (await service.check_availability(stay(prop, 30, 2))).available


async def test_an_unreachable_dynamodb_is_unavailable(devstack: DevStack, table: str, prop: Property) -> None:
    with refusing_port() as port:
        target = dataclasses.replace(devstack.endpoints.target, endpoint_url=f"http://127.0.0.1:{port}")
        async with single_attempt_client(target) as client:
            store = DynamoReservationStore(client, table)
            with pytest.raises(UpstreamUnavailableError) as caught:
                await store.list_properties()
            assert isinstance(caught.value.__cause__, EndpointConnectionError)
            reservation = Reservation(
                reservation_id=ReservationId("RES-22222222"),
                owner=new_sub(),
                stay=stay(prop, 30, 1),
                property_name=prop.name,
                status=ReservationStatus.CONFIRMED,
                total_cents=prop.nightly_rate_cents,
                currency=prop.currency,
                created_at=datetime.datetime.now(datetime.UTC),
            )
            # The booking's outcome cannot even be read back: unavailable, to be retried with the same request id.
            with pytest.raises(UpstreamUnavailableError) as caught:
                await store.reserve_nights(reservation, request_id=new_request_id())
            assert caught.value.retry_after_seconds == 1.0


async def test_an_applied_cancellation_whose_answers_were_lost_is_read_back(
    aws: AwsClients, table: str, proxy: FaultyDynamo, service: ReservationService, prop: Property
) -> None:
    sub = new_sub()
    made = await service.create_reservation(sub, stay(prop, 30, 2), request_id=new_request_id())
    proxy.inject(BOOK, "fail_after")
    cancelled = await service.cancel_reservation(sub, made.reservation_id)
    assert cancelled.status is ReservationStatus.CANCELLED
    assert await _stored(aws, table, sub, prop) == (2, set())


async def test_a_cancellation_never_applied_is_unavailable_and_can_be_retried(
    aws: AwsClients, table: str, proxy: FaultyDynamo, service: ReservationService, prop: Property
) -> None:
    sub = new_sub()
    made = await service.create_reservation(sub, stay(prop, 30, 2), request_id=new_request_id())
    proxy.inject(BOOK, "fail_before")
    with pytest.raises(UpstreamUnavailableError):
        await service.cancel_reservation(sub, made.reservation_id)
    assert (await service.get_reservation(sub, made.reservation_id)).status is ReservationStatus.CONFIRMED
    assert await _stored(aws, table, sub, prop) == (2, {made.reservation_id})
    assert (await service.cancel_reservation(sub, made.reservation_id)).status is ReservationStatus.CANCELLED
    assert await _stored(aws, table, sub, prop) == (2, set())

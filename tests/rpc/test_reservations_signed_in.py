"""ReservationService's REQUIRED RPCs over the wire, as guests signed in to the emulator's Cognito pool.

Real access tokens (tests.support.identity), the real gateway and table. Each test books on a property of its
own, with dates relative to today; guests whose whole list is inspected are fresh to the test.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import jwt
import pytest
from grpc import aio

from booking.v1 import reservations_pb2 as pb
from booking.v1 import reservations_pb2_grpc
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.domain import Property
from tests.support.auth import gateway_with, new_email
from tests.support.auth import sign_in as sign_in_with_code
from tests.support.buf import buf_curl, url
from tests.support.gateway import RunningGateway
from tests.support.identity import Tokens, emulator_sign_in
from tests.support.reservations import create_property, days_ahead, guest_items, new_request_id, night_locks
from tests.support.status import error_info, field_violations, reason_of

if TYPE_CHECKING:
    Stub = reservations_pb2_grpc.ReservationServiceAsyncStub

CONFIRMED = pb.RESERVATION_STATUS_CONFIRMED
CANCELLED = pb.RESERVATION_STATUS_CANCELLED


@dataclass(frozen=True)
class Guest:
    """A signed-in guest and a stub that sends their bearer on every call."""

    sub: str
    tokens: Tokens
    stub: Stub

    def meta(self) -> tuple[tuple[str, str]]:
        return self.tokens.bearer()

    async def book(
        self, prop: Property, first: int, nights: int, *, guests: int = 1, request_id: str = ""
    ) -> pb.Reservation:
        request = pb.CreateReservationRequest(
            property_id=prop.property_id,
            check_in=day(first),
            check_out=day(first + nights),
            guests=guests,
            request_id=request_id or new_request_id(),
        )
        answer = await self.stub.CreateReservation(request, metadata=self.meta(), timeout=20)
        return answer.reservation

    async def get(self, reservation_id: str) -> pb.Reservation:
        request = pb.GetReservationRequest(reservation_id=reservation_id)
        return (await self.stub.GetReservation(request, metadata=self.meta(), timeout=10)).reservation

    async def cancel(self, reservation_id: str) -> pb.Reservation:
        request = pb.CancelReservationRequest(reservation_id=reservation_id)
        return (await self.stub.CancelReservation(request, metadata=self.meta(), timeout=10)).reservation

    async def page(self, page_size: int = 0, page_token: str = "") -> pb.ListReservationsResponse:
        request = pb.ListReservationsRequest(page_size=page_size, page_token=page_token)
        return await self.stub.ListReservations(request, metadata=self.meta(), timeout=10)


def day(n: int) -> str:
    return days_ahead(n).isoformat()


async def sign_in(gateway: RunningGateway) -> Guest:
    tokens = await emulator_sign_in(gateway.devstack)
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    return Guest(str(claims["sub"]), tokens, reservations_pb2_grpc.ReservationServiceStub(gateway.channel))


@pytest.fixture(scope="module")
async def alice(gateway: RunningGateway) -> Guest:
    return await sign_in(gateway)


@pytest.fixture(scope="module")
async def bob(gateway: RunningGateway) -> Guest:
    return await sign_in(gateway)


@pytest.fixture
async def fresh(gateway: RunningGateway) -> Guest:
    """A guest with no reservations yet."""
    return await sign_in(gateway)


@pytest.fixture
async def prop(aws: AwsClients, table: str) -> Property:
    return await create_property(aws.dynamodb, table, capacity=3, nightly_rate_cents=20_000)


async def refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return reason_of(caught.value)


async def test_a_booking_belongs_to_the_caller_and_reads_back(
    aws: AwsClients, table: str, fresh: Guest, prop: Property
) -> None:
    made = await fresh.book(prop, 30, 3, guests=2)
    assert made.reservation_id.startswith("RES-")
    assert len(made.reservation_id) == 12
    assert (made.property_id, made.property_name) == (prop.property_id, prop.name)
    assert (made.check_in, made.check_out, made.guests) == (day(30), day(33), 2)
    assert made.status == CONFIRMED
    assert (made.total_cents, made.currency) == (60_000, "USD")
    created = made.created_at.ToDatetime(tzinfo=datetime.UTC)
    assert abs((created - datetime.datetime.now(datetime.UTC)).total_seconds()) < 600
    assert await fresh.get(made.reservation_id) == made
    assert list((await fresh.page()).reservations) == [made]
    # Stored under the token's sub, with one lock per night.
    assert len(await guest_items(aws.dynamodb, table, fresh.sub)) == 2
    locks = await night_locks(aws.dynamodb, table, prop.property_id)
    assert {night.isoformat() for night in locks} == {day(30), day(31), day(32)}
    assert set(locks.values()) == {made.reservation_id}


async def test_taken_nights_are_failed_precondition_listing_them_and_nothing_is_written(
    aws: AwsClients, table: str, alice: Guest, fresh: Guest, prop: Property
) -> None:
    held = await alice.book(prop, 40, 2)
    with pytest.raises(aio.AioRpcError) as caught:
        await fresh.book(prop, 41, 3)
    assert reason_of(caught.value) == (grpc.StatusCode.FAILED_PRECONDITION, "NIGHTS_TAKEN")
    assert dict(error_info(caught.value).metadata) == {"nights": day(41)}
    assert await guest_items(aws.dynamodb, table, fresh.sub) == []
    assert set((await night_locks(aws.dynamodb, table, prop.property_id)).values()) == {held.reservation_id}


async def test_booking_refusals_carry_status_and_reason(alice: Guest, prop: Property) -> None:
    base = {"property_id": prop.property_id, "check_in": day(50), "check_out": day(52), "guests": 1}
    cases: list[tuple[dict[str, Any], tuple[grpc.StatusCode, str], set[str]]] = [
        ({"guests": 4}, (grpc.StatusCode.FAILED_PRECONDITION, "CAPACITY_EXCEEDED"), set()),
        ({"guests": 0}, (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"), {"guests"}),
        ({"property_id": "no-such-place"}, (grpc.StatusCode.NOT_FOUND, "PROPERTY_NOT_FOUND"), set()),
        ({"request_id": "short"}, (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"), {"request_id"}),
        ({"request_id": ""}, (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"), {"request_id"}),
        ({"request_id": "bad id with spaces"}, (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"), {"request_id"}),
        ({"check_in": "2030-13-01"}, (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"), {"check_in"}),
        (
            {"check_in": day(-2), "check_out": day(1)},
            (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
            {"check_in"},
        ),
        ({"check_out": day(50)}, (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"), {"check_out"}),
        ({"check_out": day(81)}, (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"), {"check_out"}),
        (
            {"check_in": day(800), "check_out": day(801)},
            (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
            {"check_out"},
        ),
    ]
    for changes, expected, fields in cases:
        request = pb.CreateReservationRequest(**{**base, "request_id": new_request_id(), **changes})
        with pytest.raises(aio.AioRpcError) as caught:
            await alice.stub.CreateReservation(request, metadata=alice.meta(), timeout=10)
        assert reason_of(caught.value) == expected, changes
        assert set(field_violations(caught.value)) == fields, changes


async def test_a_retried_request_returns_the_same_reservation_and_other_content_is_refused(
    aws: AwsClients, table: str, fresh: Guest, prop: Property
) -> None:
    request_id = new_request_id()
    made = await fresh.book(prop, 60, 2, request_id=request_id)
    retries = await asyncio.gather(*(fresh.book(prop, 60, 2, request_id=request_id) for _ in range(5)))
    assert all(r == made for r in retries)
    with pytest.raises(aio.AioRpcError) as caught:
        await fresh.book(prop, 60, 3, request_id=request_id)
    assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")
    assert set(field_violations(caught.value)) == {"request_id"}
    assert len(await guest_items(aws.dynamodb, table, fresh.sub)) == 2
    assert list((await fresh.page()).reservations) == [made]


async def test_pages_are_newest_first_without_duplicates(fresh: Guest, prop: Property) -> None:
    made = [await fresh.book(prop, 100 + n, 1) for n in range(5)]
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = await fresh.page(page_size=2, page_token=token)
        assert len(page.reservations) <= 2
        seen.extend(r.reservation_id for r in page.reservations)
        token = page.next_page_token
        if not token:
            break
    assert seen == [r.reservation_id for r in reversed(made)]
    whole = await fresh.page()
    assert [r.reservation_id for r in whole.reservations] == seen
    assert whole.next_page_token == ""


async def test_bad_page_requests_are_invalid_argument(alice: Guest, fresh: Guest, prop: Property) -> None:
    for n in range(2):
        await alice.book(prop, 110 + n, 1)
    alice_token = (await alice.page(page_size=1)).next_page_token
    assert alice_token
    for page_size, token, field in [
        (-1, "", "page_size"),
        (1, "garbage", "page_token"),
        (1, "W1tb" * 334, "page_token"),  # 1,002 "[", base64url: nested deeper than the JSON decoder goes
        (1, alice_token, "page_token"),
    ]:
        with pytest.raises(aio.AioRpcError) as caught:
            await fresh.page(page_size=page_size, page_token=token)
        assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert set(field_violations(caught.value)) == {field}


async def test_another_guests_reservation_is_not_found_exactly_like_an_unknown_one(
    aws: AwsClients, table: str, alice: Guest, bob: Guest, prop: Property
) -> None:
    mine = await alice.book(prop, 120, 2)
    answers = []
    for rid in (mine.reservation_id, "RES-22222222"):
        for call in (
            bob.stub.GetReservation(pb.GetReservationRequest(reservation_id=rid), metadata=bob.meta(), timeout=10),
            bob.stub.CancelReservation(
                pb.CancelReservationRequest(reservation_id=rid), metadata=bob.meta(), timeout=10
            ),
        ):
            with pytest.raises(aio.AioRpcError) as caught:
                await call
            assert reason_of(caught.value) == (grpc.StatusCode.NOT_FOUND, "RESERVATION_NOT_FOUND")
            answers.append((caught.value.details(), dict(error_info(caught.value).metadata)))
    assert answers[:2] == answers[2:]  # nothing tells someone else's id from an unknown one
    assert mine.reservation_id not in {r.reservation_id for r in (await bob.page(page_size=100)).reservations}
    assert (await alice.get(mine.reservation_id)).status == CONFIRMED
    assert set((await night_locks(aws.dynamodb, table, prop.property_id)).values()) == {mine.reservation_id}


async def test_a_malformed_reservation_id_is_invalid_argument(alice: Guest) -> None:
    request = pb.GetReservationRequest(reservation_id="RES-1")
    with pytest.raises(aio.AioRpcError) as caught:
        await alice.stub.GetReservation(request, metadata=alice.meta(), timeout=10)
    assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert set(field_violations(caught.value)) == {"reservation_id"}


async def test_cancel_frees_the_nights_twice_is_harmless_and_they_can_be_rebooked(
    gateway: RunningGateway, aws: AwsClients, table: str, alice: Guest, bob: Guest, prop: Property
) -> None:
    made = await alice.book(prop, 130, 3)
    cancelled = await alice.cancel(made.reservation_id)
    assert cancelled.status == CANCELLED
    assert cancelled.reservation_id == made.reservation_id
    assert await night_locks(aws.dynamodb, table, prop.property_id) == {}
    assert await alice.cancel(made.reservation_id) == cancelled
    public = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    check = pb.CheckAvailabilityRequest(property_id=prop.property_id, check_in=day(130), check_out=day(133))
    assert (await public.CheckAvailability(check, timeout=10)).available
    rebooked = await bob.book(prop, 130, 3)
    assert await alice.cancel(made.reservation_id) == cancelled
    assert set((await night_locks(aws.dynamodb, table, prop.property_id)).values()) == {rebooked.reservation_id}
    assert not (await public.CheckAvailability(check, timeout=10)).available
    assert (await alice.get(made.reservation_id)).status == CANCELLED


async def test_fifty_concurrent_bookings_by_two_guests_have_one_winner_per_night(
    gateway: RunningGateway, settings: Settings, aws: AwsClients, small_table: str
) -> None:
    # A gateway on a small table of its own: moto copies the whole table on every transaction.
    async with gateway_with(gateway, settings.replace(table_name=small_table)) as own:
        await _fifty_bookings(own, aws, small_table)


async def _fifty_bookings(gateway: RunningGateway, aws: AwsClients, table: str) -> None:
    prop = await create_property(aws.dynamodb, table, capacity=3, nightly_rate_cents=20_000)
    first, second = await sign_in(gateway), await sign_in(gateway)
    racers = [(first if n % 2 else second, 200 + n % 10) for n in range(50)]  # 3-night stays, overlapping

    async def attempt(guest: Guest, start: int) -> pb.Reservation | tuple[grpc.StatusCode, str, str]:
        try:
            return await guest.book(prop, start, 3)
        except aio.AioRpcError as error:
            return (*reason_of(error), dict(error_info(error).metadata).get("nights", ""))

    outcomes = await asyncio.gather(*(attempt(guest, start) for guest, start in racers))
    winners = [o for o in outcomes if isinstance(o, pb.Reservation)]
    losers = [o for o in outcomes if not isinstance(o, pb.Reservation)]
    assert winners
    assert losers
    assert {(code, reason) for code, reason, _ in losers} == {(grpc.StatusCode.FAILED_PRECONDITION, "NIGHTS_TAKEN")}
    # Exactly one winner per night: the winners' nights do not overlap, and the locks are exactly theirs.
    nights = [datetime.date.fromisoformat(w.check_in) + datetime.timedelta(days=k) for w in winners for k in range(3)]
    assert len(nights) == len(set(nights))
    locks = await night_locks(aws.dynamodb, table, prop.property_id)
    by_id = {w.reservation_id: w for w in winners}
    assert set(locks) == set(nights)
    for night, rid in locks.items():
        winner = by_id[rid]
        assert winner.check_in <= night.isoformat() < winner.check_out
    # No orphans: the guests store exactly the winning reservations (and their request ids), nothing more.
    listed: list[str] = []
    for guest in (first, second):
        mine = [r.reservation_id for r in (await guest.page(page_size=100)).reservations]
        assert len(await guest_items(aws.dynamodb, table, guest.sub)) == 2 * len(mine)
        listed.extend(mine)
    assert sorted(listed) == sorted(by_id)
    # Every loser was told nights that are now held.
    for _, _, told in losers:
        assert {datetime.date.fromisoformat(n) for n in told.split(",")} <= set(locks)


async def test_the_readme_authenticated_buf_curl_recipe_books(
    gateway: RunningGateway, fresh: Guest, prop: Property
) -> None:
    code, out, err = await buf_curl(
        gateway.target,
        "-H",
        f"authorization: Bearer {fresh.tokens.access_token}",
        url(gateway.target, "booking.v1.ReservationService/CreateReservation"),
        data={
            "property_id": prop.property_id,
            "check_in": day(150),
            "check_out": day(152),
            "guests": 2,
            "request_id": new_request_id(),
        },
    )
    assert code == 0, err
    booked = json.loads(out)["reservation"]
    assert booked["status"] == "RESERVATION_STATUS_CONFIRMED"
    assert (await fresh.get(booked["reservationId"])).check_in == day(150)


async def test_a_guest_signed_in_with_a_code_books_under_their_guest_id(
    gateway: RunningGateway, prop: Property
) -> None:
    delivery = await sign_in_with_code(gateway, new_email("booker"))
    guest = Guest(
        delivery.sub,
        Tokens(delivery.access_token, delivery.id_token, delivery.refresh_token),
        reservations_pb2_grpc.ReservationServiceStub(gateway.channel),
    )
    booked = await guest.book(prop, 40, 2)
    assert delivery.guest_id.startswith("GST-")
    assert booked.guest_id == delivery.guest_id
    assert (await guest.get(booked.reservation_id)).guest_id == delivery.guest_id

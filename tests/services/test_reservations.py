"""ReservationService with the real DynamoDB adapter on the emulator: every rule of issue 5.

Each test books on a property of its own (unique id) with dates relative to today, and as guests of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import re

import pytest

from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb import keys
from gateway.adapters.dynamodb.reservation_store import DynamoReservationStore
from gateway.devstack.bootstrap import DEMO_PROPERTIES
from gateway.domain import GuestId, Principal, Property, Reservation, ReservationStatus, Stay, Sub
from gateway.errors import (
    CapacityExceededError,
    InvalidArgumentError,
    NightsTakenError,
    PropertyNotFoundError,
    RequestIdReusedError,
    ReservationNotFoundError,
)
from gateway.services.reservations import ReservationService
from tests.support.reservations import (
    create_property,
    days_ahead,
    guest_items,
    new_request_id,
    new_sub,
    night_locks,
    stay,
    today,
)


@pytest.fixture
async def prop(aws: AwsClients, table: str) -> Property:
    """A property of this test's own: capacity 4, 125.00 USD a night."""
    return await create_property(aws.dynamodb, table)


async def book(
    service: ReservationService, owner: Sub | Principal, wanted: Stay, request_id: str | None = None
) -> Reservation:
    return await service.create_reservation(
        owner, wanted, request_id=new_request_id() if request_id is None else request_id
    )


def fields_of(error: InvalidArgumentError) -> set[str]:
    return {v.field for v in error.violations}


# Properties and availability ------------------------------------------------------------------------------


async def test_list_properties_has_the_demo_properties_sorted_by_name(reservations: ReservationService) -> None:
    properties = await reservations.list_properties()
    by_id = {p.property_id: p for p in properties}
    for demo in DEMO_PROPERTIES:
        assert by_id[demo.property_id].name == demo.name
        assert by_id[demo.property_id].capacity == demo.capacity
        assert by_id[demo.property_id].nightly_rate_cents == demo.nightly_rate_cents
    names = [(p.name, p.property_id) for p in properties]
    assert names == sorted(names)


async def test_availability_of_a_free_stay_lists_each_night_and_the_total(
    reservations: ReservationService, prop: Property
) -> None:
    answer = await reservations.check_availability(stay(prop, 30, 3, guests=2))
    assert answer.available
    assert answer.property == prop
    assert [n.night for n in answer.nights] == [days_ahead(30), days_ahead(31), days_ahead(32)]
    assert all(n.available for n in answer.nights)
    assert answer.total_cents == 3 * prop.nightly_rate_cents
    assert answer.currency == "USD"


async def test_availability_shows_booked_nights_and_check_out_is_exclusive(
    reservations: ReservationService, prop: Property
) -> None:
    await book(reservations, new_sub(), stay(prop, 30, 2))  # nights 30 and 31
    answer = await reservations.check_availability(stay(prop, 29, 4))  # nights 29..32
    assert not answer.available
    assert [(n.night, n.available) for n in answer.nights] == [
        (days_ahead(29), True),
        (days_ahead(30), False),
        (days_ahead(31), False),
        (days_ahead(32), True),
    ]
    # Arriving on the other stay's check-out day is fine.
    assert (await reservations.check_availability(stay(prop, 32, 2))).available
    assert (await reservations.check_availability(stay(prop, 28, 2))).available


async def test_availability_for_more_guests_than_the_property_holds_is_not_available(
    reservations: ReservationService, prop: Property
) -> None:
    answer = await reservations.check_availability(stay(prop, 30, 2, guests=prop.capacity + 1))
    assert not answer.available
    assert all(n.available for n in answer.nights)


BAD_STAYS: list[tuple[str, int, int, int, set[str]]] = [
    # (case, first night in days from today, nights, guests, fields named)
    ("check-out on check-in", 10, 0, 1, {"check_out"}),
    ("check-out before check-in", 10, -2, 1, {"check_out"}),
    ("31 nights", 10, 31, 1, {"check_out"}),
    ("check-in yesterday", -1, 2, 1, {"check_in"}),
    ("check-out beyond two years", 2 * 366, 2, 1, {"check_out"}),
    ("no guests", 10, 2, 0, {"guests"}),
    ("negative guests", 10, 2, -3, {"guests"}),
    ("everything wrong at once", -5, -1, -1, {"check_in", "check_out", "guests"}),
]


@pytest.mark.parametrize(("case", "first", "nights", "guests", "fields"), BAD_STAYS, ids=[c[0] for c in BAD_STAYS])
async def test_bad_stays_are_invalid_argument_naming_each_field(
    reservations: ReservationService, prop: Property, case: str, first: int, nights: int, guests: int, fields: set[str]
) -> None:
    bad = Stay(prop.property_id, days_ahead(first), days_ahead(first + nights), guests)
    with pytest.raises(InvalidArgumentError) as caught:
        await reservations.check_availability(bad)
    assert type(caught.value) is InvalidArgumentError
    assert fields_of(caught.value) == fields
    with pytest.raises(InvalidArgumentError) as caught:
        await book(reservations, new_sub(), bad)
    assert fields_of(caught.value) == fields


async def test_the_limits_themselves_are_allowed(reservations: ReservationService, prop: Property) -> None:
    assert (await reservations.check_availability(Stay(prop.property_id, today(), days_ahead(30), 1))).available
    try:
        last = today().replace(year=today().year + 2)
    except ValueError:  # 29 February
        last = today().replace(year=today().year + 2, day=28)
    far = Stay(prop.property_id, last - datetime.timedelta(days=3), last, prop.capacity)
    assert (await reservations.check_availability(far)).available


async def test_unknown_or_missing_property(reservations: ReservationService) -> None:
    with pytest.raises(PropertyNotFoundError):
        await reservations.check_availability(Stay("no-such-place", days_ahead(5), days_ahead(6), 1))
    with pytest.raises(PropertyNotFoundError):
        await book(reservations, new_sub(), Stay("no-such-place", days_ahead(5), days_ahead(6), 1))
    with pytest.raises(InvalidArgumentError) as caught:
        await reservations.check_availability(Stay("", days_ahead(5), days_ahead(6), 1))
    assert fields_of(caught.value) == {"property_id"}


# Booking --------------------------------------------------------------------------------------------------


async def test_a_booking_belongs_to_its_owner_and_holds_its_nights(
    aws: AwsClients, table: str, reservations: ReservationService, prop: Property
) -> None:
    sub = new_sub()
    principal = Principal(
        sub=sub,
        username=sub,
        client_id="client",
        token_family="family",
        expires_at=0.0,
        issued_at=0.0,
        guest_id=GuestId("GST-1"),
    )
    before = datetime.datetime.now(datetime.UTC)
    made = await book(reservations, principal, stay(prop, 40, 3, guests=2))
    assert re.fullmatch(r"RES-[23456789ABCDEFGHJKMNPQRSTVWXYZ]{8}", made.reservation_id)
    assert made.owner == sub
    assert made.guest_id == "GST-1"
    assert made.status is ReservationStatus.CONFIRMED
    assert made.stay == stay(prop, 40, 3, guests=2)
    assert made.property_name == prop.name
    assert made.total_cents == 3 * prop.nightly_rate_cents
    assert made.created_at >= before
    assert await reservations.get_reservation(sub, made.reservation_id) == made
    locks = await night_locks(aws.dynamodb, table, prop.property_id)
    assert locks == {night: made.reservation_id for night in made.nights}


async def test_reservation_ids_differ(reservations: ReservationService, prop: Property) -> None:
    sub = new_sub()
    ids = {(await book(reservations, sub, stay(prop, 40 + 2 * n, 1))).reservation_id for n in range(5)}
    assert len(ids) == 5


async def test_more_guests_than_capacity_is_capacity_exceeded(
    aws: AwsClients, table: str, reservations: ReservationService, prop: Property
) -> None:
    sub = new_sub()
    with pytest.raises(CapacityExceededError) as caught:
        await book(reservations, sub, stay(prop, 40, 2, guests=prop.capacity + 1))
    assert caught.value.metadata == {"capacity": str(prop.capacity)}
    assert await guest_items(aws.dynamodb, table, sub) == []
    assert await book(reservations, sub, stay(prop, 40, 2, guests=prop.capacity))


@pytest.mark.parametrize("request_id", ["", "short12", "x" * 65, "has space1", "semi;colon", "ünïcødé-id"])
async def test_malformed_request_ids_are_invalid_argument(
    reservations: ReservationService, prop: Property, request_id: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await book(reservations, new_sub(), stay(prop, 40, 1), request_id=request_id)
    assert fields_of(caught.value) == {"request_id"}


async def test_request_id_limits_are_allowed(reservations: ReservationService, prop: Property) -> None:
    sub = new_sub()
    await book(reservations, sub, stay(prop, 40, 1), request_id="a-b_C-d1")
    await book(reservations, sub, stay(prop, 41, 1), request_id="Z" * 64)


async def test_nights_taken_lists_exactly_the_overlap_and_writes_nothing(
    aws: AwsClients, table: str, reservations: ReservationService, prop: Property
) -> None:
    first = await book(reservations, new_sub(), stay(prop, 50, 2))  # nights 50, 51
    locks_before = await night_locks(aws.dynamodb, table, prop.property_id)
    loser = new_sub()
    with pytest.raises(NightsTakenError) as caught:
        await book(reservations, loser, stay(prop, 49, 4))  # nights 49..52
    assert caught.value.reason == "NIGHTS_TAKEN"
    assert caught.value.metadata == {"nights": f"{days_ahead(50).isoformat()},{days_ahead(51).isoformat()}"}
    assert await guest_items(aws.dynamodb, table, loser) == []
    assert await night_locks(aws.dynamodb, table, prop.property_id) == locks_before
    assert set(locks_before.values()) == {first.reservation_id}


async def test_retrying_the_same_request_returns_the_same_reservation_and_books_once(
    aws: AwsClients, table: str, reservations: ReservationService, prop: Property
) -> None:
    sub = new_sub()
    request_id = new_request_id()
    first = await book(reservations, sub, stay(prop, 60, 3), request_id)
    again = await book(reservations, sub, stay(prop, 60, 3), request_id)
    concurrent = await asyncio.gather(*(book(reservations, sub, stay(prop, 60, 3), request_id) for _ in range(5)))
    assert again == first
    assert all(r == first for r in concurrent)
    items = await guest_items(aws.dynamodb, table, sub)
    assert sorted(item[keys.SK]["S"] for item in items) == [
        f"REQUEST#{request_id}",
        f"RES#{first.reservation_id}",
    ]
    assert set((await night_locks(aws.dynamodb, table, prop.property_id)).values()) == {first.reservation_id}


async def test_reusing_a_request_id_for_other_content_is_request_id_reused(
    aws: AwsClients, table: str, reservations: ReservationService, prop: Property
) -> None:
    sub = new_sub()
    request_id = new_request_id()
    first = await book(reservations, sub, stay(prop, 70, 2), request_id)
    for other in (stay(prop, 72, 2), stay(prop, 70, 3), stay(prop, 70, 2, guests=2)):
        with pytest.raises(RequestIdReusedError) as caught:
            await book(reservations, sub, other, request_id)
        assert fields_of(caught.value) == {"request_id"}
    assert len(await guest_items(aws.dynamodb, table, sub)) == 2
    assert set((await night_locks(aws.dynamodb, table, prop.property_id)).values()) == {first.reservation_id}


async def test_request_ids_are_per_guest(reservations: ReservationService, prop: Property) -> None:
    request_id = new_request_id()
    mine = await book(reservations, new_sub(), stay(prop, 70, 1), request_id)
    theirs = await book(reservations, new_sub(), stay(prop, 71, 1), request_id)
    assert mine.reservation_id != theirs.reservation_id


async def test_fifty_concurrent_bookings_of_overlapping_stays_have_one_winner_per_night(
    aws: AwsClients, small_table: str
) -> None:
    table = small_table
    reservations = ReservationService(DynamoReservationStore(aws.dynamodb, table))
    prop = await create_property(aws.dynamodb, table)
    # 50 guests; guest i wants 3 nights from day 100 + i % 10: every night is wanted by several guests.
    guests = [new_sub() for _ in range(50)]
    wanted = [stay(prop, 100 + i % 10, 3) for i in range(50)]
    outcomes = await asyncio.gather(
        *(book(reservations, sub, want) for sub, want in zip(guests, wanted, strict=True)), return_exceptions=True
    )
    winners = [o for o in outcomes if isinstance(o, Reservation)]
    losers = [sub for sub, o in zip(guests, outcomes, strict=True) if not isinstance(o, Reservation)]
    assert all(isinstance(o, NightsTakenError | Reservation) for o in outcomes), outcomes
    assert winners
    assert losers
    # No two winners share a night, and the locks are exactly the winners' nights.
    held = [night for winner in winners for night in winner.nights]
    assert len(held) == len(set(held))
    locks = await night_locks(aws.dynamodb, table, prop.property_id)
    assert locks == {night: winner.reservation_id for winner in winners for night in winner.nights}
    # Losers have nothing stored; each winner has exactly its reservation and its request id.
    for sub in losers:
        assert await guest_items(aws.dynamodb, table, sub) == []
    for winner in winners:
        items = await guest_items(aws.dynamodb, table, winner.owner)
        assert len(items) == 2
    # Every loser was told which nights are taken, and they are held by winners.
    for outcome in outcomes:
        if isinstance(outcome, NightsTakenError):
            nights = {datetime.date.fromisoformat(n) for n in outcome.metadata["nights"].split(",")}
            assert nights <= set(locks)
    answer = await reservations.check_availability(stay(prop, 100, 12))
    assert {n.night for n in answer.nights if not n.available} == set(locks)


# A guest's own reservations ----------------------------------------------------------------------------------


async def test_pages_are_newest_first_without_duplicates(reservations: ReservationService, prop: Property) -> None:
    sub = new_sub()
    made = [await book(reservations, sub, stay(prop, 200 + n, 1)) for n in range(7)]
    seen: list[Reservation] = []
    token = ""
    pages = 0
    while True:
        page = await reservations.list_reservations(sub, page_size=3, page_token=token)
        assert len(page.reservations) <= 3
        seen.extend(page.reservations)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert [r.reservation_id for r in seen] == [r.reservation_id for r in reversed(made)]
    everything = await reservations.list_reservations(sub)
    assert everything.reservations == tuple(reversed(made))
    assert everything.next_page_token == ""
    exact = await reservations.list_reservations(sub, page_size=7)
    assert len(exact.reservations) == 7
    assert exact.next_page_token == ""
    assert len((await reservations.list_reservations(sub, page_size=1000)).reservations) == 7


async def test_default_page_size_is_twenty(reservations: ReservationService, prop: Property) -> None:
    sub = new_sub()
    for n in range(21):
        await book(reservations, sub, stay(prop, 300 + n, 1))
    first = await reservations.list_reservations(sub, page_size=0)
    assert len(first.reservations) == 20
    rest = await reservations.list_reservations(sub, page_token=first.next_page_token)
    assert len(rest.reservations) == 1
    assert rest.next_page_token == ""


async def test_a_guest_without_reservations_gets_an_empty_page(reservations: ReservationService) -> None:
    page = await reservations.list_reservations(new_sub())
    assert page.reservations == ()
    assert page.next_page_token == ""


async def test_bad_page_requests_are_invalid_argument(reservations: ReservationService, prop: Property) -> None:
    mine, theirs = new_sub(), new_sub()
    for n in range(2):
        await book(reservations, theirs, stay(prop, 400 + n, 1))
        await book(reservations, mine, stay(prop, 410 + n, 1))
    their_token = (await reservations.list_reservations(theirs, page_size=1)).next_page_token
    assert their_token
    for page_size, token, field in [
        (-1, "", "page_size"),
        (5, "not-a-token", "page_token"),
        (5, "eyJ2IjoxfQ", "page_token"),  # {"v":1}
        (5, "x" * 5000, "page_token"),
        (5, "W1tb" * 334, "page_token"),  # 1,002 "[": deeper than the JSON decoder goes
        (5, their_token, "page_token"),  # another guest's token never reads their data
    ]:
        with pytest.raises(InvalidArgumentError) as caught:
            await reservations.list_reservations(mine, page_size=page_size, page_token=token)
        assert fields_of(caught.value) == {field}


async def test_another_guests_reservation_is_not_found_like_an_unknown_id(
    aws: AwsClients, table: str, reservations: ReservationService, prop: Property
) -> None:
    owner, intruder = new_sub(), new_sub()
    made = await book(reservations, owner, stay(prop, 500, 2))
    for rid in (made.reservation_id, "RES-22222222"):
        with pytest.raises(ReservationNotFoundError) as caught:
            await reservations.get_reservation(intruder, rid)
        assert str(caught.value) == "no reservation with that id"
        with pytest.raises(ReservationNotFoundError):
            await reservations.cancel_reservation(intruder, rid)
    assert (await reservations.list_reservations(intruder)).reservations == ()
    assert await reservations.get_reservation(owner, made.reservation_id) == made
    assert set((await night_locks(aws.dynamodb, table, prop.property_id)).values()) == {made.reservation_id}


async def test_reservation_ids_are_read_case_insensitively_and_malformed_ones_are_invalid(
    reservations: ReservationService, prop: Property
) -> None:
    sub = new_sub()
    made = await book(reservations, sub, stay(prop, 520, 1))
    assert await reservations.get_reservation(sub, f" {made.reservation_id.lower()} ") == made
    for bad in ("", "RES-", "RES-1234567", "RES-123456789", "RES-OOOOOOOO", "res_abcdefgh"):
        with pytest.raises(InvalidArgumentError) as caught:
            await reservations.get_reservation(sub, bad)
        assert fields_of(caught.value) == {"reservation_id"}


async def test_cancel_frees_the_nights_twice_is_harmless_and_the_nights_can_be_rebooked(
    aws: AwsClients, table: str, reservations: ReservationService, prop: Property
) -> None:
    first_guest, second_guest = new_sub(), new_sub()
    made = await book(reservations, first_guest, stay(prop, 600, 3))
    cancelled = await reservations.cancel_reservation(first_guest, made.reservation_id)
    assert cancelled == dataclasses.replace(made, status=ReservationStatus.CANCELLED)
    assert await night_locks(aws.dynamodb, table, prop.property_id) == {}
    assert (await reservations.check_availability(stay(prop, 600, 3))).available
    assert await reservations.cancel_reservation(first_guest, made.reservation_id) == cancelled
    # Someone else books the same nights; cancelling the old reservation again must not free them.
    rebooked = await book(reservations, second_guest, stay(prop, 600, 3))
    assert await reservations.cancel_reservation(first_guest, made.reservation_id) == cancelled
    locks = await night_locks(aws.dynamodb, table, prop.property_id)
    assert locks == {night: rebooked.reservation_id for night in rebooked.nights}
    # The cancelled one is still listed, as cancelled, behind the newer one.
    assert (await reservations.list_reservations(first_guest)).reservations == (cancelled,)
    assert await reservations.get_reservation(first_guest, made.reservation_id) == cancelled


async def test_concurrent_cancels_agree(
    aws: AwsClients, table: str, reservations: ReservationService, prop: Property
) -> None:
    sub = new_sub()
    made = await book(reservations, sub, stay(prop, 620, 2))
    results = await asyncio.gather(*(reservations.cancel_reservation(sub, made.reservation_id) for _ in range(5)))
    assert all(r.status is ReservationStatus.CANCELLED for r in results)
    assert await night_locks(aws.dynamodb, table, prop.property_id) == {}


async def test_retrying_a_cancelled_booking_request_returns_the_cancelled_reservation(
    reservations: ReservationService, prop: Property
) -> None:
    sub = new_sub()
    request_id = new_request_id()
    made = await book(reservations, sub, stay(prop, 640, 2), request_id)
    cancelled = await reservations.cancel_reservation(sub, made.reservation_id)
    assert await book(reservations, sub, stay(prop, 640, 2), request_id) == cancelled

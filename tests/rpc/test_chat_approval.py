"""Bookings and cancellations wait for the person's decision (issue 18), over the wire on both faces.

The scripted agent asks for `create_reservation` / `cancel_reservation`; the gateway holds the call, sends
`approval_requested` with its own summary and ends the turn with AWAITING_APPROVAL. Only a `decision` from the
session's owner runs it, once; the table and the ReservationService RPCs say what was booked.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import jwt
import pytest

from booking.v1 import chat_pb2, reservations_pb2_grpc
from booking.v1 import reservations_pb2 as pb
from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb import keys
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.domain import Property
from gateway.testing import eventually
from tests.support.chat import ChatFace, ChatRefused, Turn, decision
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.identity import Tokens, emulator_sign_in
from tests.support.reservations import create_property, days_ahead, night_locks, partition_items

FACES = ["grpc", "connect"]


@pytest.fixture(params=FACES)
def face(request: pytest.FixtureRequest, gateway: RunningGateway) -> ChatFace:
    return ChatFace(request.param, gateway.channel, gateway.web_url)


async def fresh_property(aws: AwsClients, table: str) -> Property:
    return await create_property(aws.dynamodb, table, name=f"Studio s{uuid.uuid4().hex[:8]}")


def book_text(prop: Property, first: int = 60, nights: int = 3, guests: int = 2) -> str:
    return f"book the {prop.name} for {guests} guests {days_ahead(first)} to {days_ahead(first + nights)}"


async def reservations_of(gateway: RunningGateway, guest: Tokens) -> list[str]:
    """The guest's active reservations, as ListReservations answers."""
    stub = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    page = await stub.ListReservations(pb.ListReservationsRequest(page_size=100), metadata=guest.bearer(), timeout=10)
    return [r.reservation_id for r in page.reservations if r.status == pb.RESERVATION_STATUS_CONFIRMED]


def sub_of(guest: Tokens) -> str:
    return str(jwt.decode(guest.access_token, options={"verify_signature": False})["sub"])


async def asked(face: ChatFace, guest: Tokens, prop: Property, **stay: int) -> Turn:
    """A signed-in guest asks to book: the turn ends waiting for approval, nothing booked yet."""
    turn = await face.say(book_text(prop, **stay), metadata=guest.bearer())
    assert turn.approval is not None, (turn.kinds, turn.text)
    assert turn.complete.stop_reason == chat_pb2.STOP_REASON_AWAITING_APPROVAL
    assert turn.kinds[-2:] == ["approval_requested", "turn_complete"]
    # The held call was neither started nor finished: it runs only on the decision.
    assert "create_reservation" not in [t.name for t in turn.tools]
    return turn


async def test_approve_books_exactly_the_summarised_stay_once(
    face: ChatFace, aws: AwsClients, table: str, gateway: RunningGateway
) -> None:
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(gateway.devstack)
    turn = await asked(face, guest, prop, first=60, nights=3, guests=2)
    approval = turn.approval
    assert approval is not None
    check_in, check_out = days_ahead(60), days_ahead(63)
    assert approval.tool_name == "create_reservation"
    assert approval.summary.startswith(f"Book {prop.name}, ")
    assert approval.summary.endswith(", 3 nights, 2 guests, 375.00 USD")
    assert str(check_in.day) in approval.summary
    assert str(check_out.year) in approval.summary
    assert 500 < approval.expires_at.seconds - time.time() <= 600
    assert await reservations_of(gateway, guest) == []

    done = await face.send(decision(turn.session_id, approval.approval_id, approve=True), guest.bearer())

    assert [(t.name, t.ok) for t in done.tools] == [("create_reservation", True)]
    assert "Booked!" in done.text
    assert done.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    assert len(await reservations_of(gateway, guest)) == 1
    locks = await night_locks(aws.dynamodb, table, prop.property_id)
    assert sorted(locks) == [days_ahead(60), days_ahead(61), days_ahead(62)]

    with pytest.raises(ChatRefused) as reused:
        await face.send(decision(turn.session_id, approval.approval_id, approve=True), guest.bearer())
    assert (reused.value.code, reused.value.reason) == ("failed_precondition", "APPROVAL_ALREADY_USED")
    assert len(await reservations_of(gateway, guest)) == 1


async def test_decline_books_nothing_and_the_agent_says_so(
    face: ChatFace, aws: AwsClients, table: str, gateway: RunningGateway
) -> None:
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(gateway.devstack)
    turn = await asked(face, guest, prop)
    assert turn.approval is not None

    done = await face.send(decision(turn.session_id, turn.approval.approval_id, approve=False), guest.bearer())

    assert [(t.name, t.ok, t.summary) for t in done.tools] == [
        ("create_reservation", False, "declined: nothing was booked")
    ]
    assert "haven't booked anything" in done.text
    assert await reservations_of(gateway, guest) == []
    assert await night_locks(aws.dynamodb, table, prop.property_id) == {}


async def test_a_cancellation_waits_for_approval_too(
    face: ChatFace, aws: AwsClients, table: str, gateway: RunningGateway
) -> None:
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(gateway.devstack)
    turn = await asked(face, guest, prop, first=70, nights=2, guests=1)
    assert turn.approval is not None
    booked = await face.send(decision(turn.session_id, turn.approval.approval_id, approve=True), guest.bearer())
    reservation_id = booked.tools[0].summary.split()[1].rstrip(":")

    cancel = await face.say(f"cancel {reservation_id}", turn.session_id, guest.bearer())
    assert cancel.approval is not None
    assert cancel.approval.tool_name == "cancel_reservation"
    assert cancel.approval.summary.startswith(f"Cancel {reservation_id}: {prop.name}, ")
    assert cancel.approval.summary.endswith(", 2 nights, 1 guest, 250.00 USD")
    assert len(await night_locks(aws.dynamodb, table, prop.property_id)) == 2

    done = await face.send(decision(turn.session_id, cancel.approval.approval_id, approve=True), guest.bearer())
    assert [(t.name, t.ok) for t in done.tools] == [("cancel_reservation", True)]
    assert await night_locks(aws.dynamodb, table, prop.property_id) == {}


async def test_only_the_owner_decides(face: ChatFace, aws: AwsClients, table: str, gateway: RunningGateway) -> None:
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(gateway.devstack)
    other = await emulator_sign_in(gateway.devstack)
    turn = await asked(face, guest, prop)
    assert turn.approval is not None
    request = decision(turn.session_id, turn.approval.approval_id, approve=True)

    with pytest.raises(ChatRefused) as someone_else:
        await face.send(request, other.bearer())
    assert (someone_else.value.code, someone_else.value.reason) == ("permission_denied", "SESSION_NOT_OWNED")
    with pytest.raises(ChatRefused) as nobody:
        await face.send(request)
    assert nobody.value.code == "unauthenticated"
    assert await reservations_of(gateway, guest) == []

    # Nothing was used up: the owner still decides.
    done = await face.send(request, guest.bearer())
    assert [(t.name, t.ok) for t in done.tools] == [("create_reservation", True)]


async def test_unknown_approvals_and_malformed_decisions_are_refused(
    face: ChatFace, aws: AwsClients, table: str, gateway: RunningGateway
) -> None:
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(gateway.devstack)
    turn = await asked(face, guest, prop)

    with pytest.raises(ChatRefused) as unknown:
        await face.send(decision(turn.session_id, "apv_not-a-real-one", approve=True), guest.bearer())
    assert (unknown.value.code, unknown.value.reason) == ("not_found", "APPROVAL_NOT_FOUND")

    both = decision(turn.session_id, "apv_x", approve=True)
    both.message = "yes"
    for request in (both, chat_pb2.ChatRequest(session_id=turn.session_id)):
        with pytest.raises(ChatRefused) as bad:
            await face.send(request, guest.bearer())
        assert (bad.value.code, bad.value.reason) == ("invalid_argument", "INVALID_ARGUMENT")
    assert await reservations_of(gateway, guest) == []


async def test_a_new_message_withdraws_the_approval_and_a_typed_yes_approves_nothing(
    face: ChatFace, aws: AwsClients, table: str, gateway: RunningGateway
) -> None:
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(gateway.devstack)
    turn = await asked(face, guest, prop)
    assert turn.approval is not None

    yes = await face.say("yes", turn.session_id, guest.bearer())

    assert [(t.name, t.ok, t.summary) for t in yes.tools] == [
        ("create_reservation", False, "withdrawn: nothing was booked")
    ]
    assert "cannot approve" in yes.text
    assert yes.approval is None
    assert await reservations_of(gateway, guest) == []
    with pytest.raises(ChatRefused) as late:
        await face.send(decision(turn.session_id, turn.approval.approval_id, approve=True), guest.bearer())
    assert (late.value.code, late.value.reason) == ("failed_precondition", "APPROVAL_ALREADY_USED")

    # Another message is handled as usual.
    mine = await face.say("what are my reservations?", turn.session_id, guest.bearer())
    assert [(t.name, t.ok) for t in mine.tools] == [("list_my_reservations", True)]
    assert await reservations_of(gateway, guest) == []


async def test_a_stay_taken_between_approval_and_decision_is_nights_taken_explained(
    face: ChatFace, aws: AwsClients, table: str, gateway: RunningGateway
) -> None:
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(gateway.devstack)
    rival = await emulator_sign_in(gateway.devstack)
    turn = await asked(face, guest, prop, first=80, nights=3)
    assert turn.approval is not None
    reservations = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    await reservations.CreateReservation(
        pb.CreateReservationRequest(
            property_id=prop.property_id,
            check_in=days_ahead(81).isoformat(),
            check_out=days_ahead(82).isoformat(),
            guests=1,
            request_id=f"rival-{uuid.uuid4().hex}",
        ),
        metadata=rival.bearer(),
        timeout=10,
    )

    done = await face.send(decision(turn.session_id, turn.approval.approval_id, approve=True), guest.bearer())

    assert [(t.name, t.ok) for t in done.tools] == [("create_reservation", False)]
    assert "already booked" in done.text
    assert days_ahead(81).isoformat() in done.text
    assert await reservations_of(gateway, guest) == []


async def test_fifty_concurrent_approvals_book_once(
    face: ChatFace, aws: AwsClients, table: str, gateway: RunningGateway
) -> None:
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(gateway.devstack)
    turn = await asked(face, guest, prop)
    assert turn.approval is not None
    request = decision(turn.session_id, turn.approval.approval_id, approve=True)

    async def decide() -> Turn | ChatRefused:
        try:
            return await face.send(request, guest.bearer())
        except ChatRefused as refused:
            return refused

    outcomes = await asyncio.gather(*(decide() for _ in range(50)))

    booked = [o for o in outcomes if isinstance(o, Turn)]
    refused = [o for o in outcomes if isinstance(o, ChatRefused)]
    assert len(booked) == 1
    assert [(t.name, t.ok) for t in booked[0].tools] == [("create_reservation", True)]
    assert {(r.code, r.reason) for r in refused} == {("failed_precondition", "APPROVAL_ALREADY_USED")}
    assert len(await reservations_of(gateway, guest)) == 1


async def test_the_pending_action_is_stored_under_the_session_without_secrets(
    aws: AwsClients, table: str, gateway: RunningGateway
) -> None:
    face = ChatFace("grpc", gateway.channel, gateway.web_url)
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(gateway.devstack)
    turn = await asked(face, guest, prop)
    assert turn.approval is not None

    items = await partition_items(aws.dynamodb, table, keys.chat_partition(turn.session_id))
    held = [i for i in items if i["SK"]["S"].startswith(keys.CHAT_APPROVAL_PREFIX)]
    assert len(held) == 1
    item = held[0]
    assert (item["state"]["S"], item["tool_name"]["S"], item["owner_sub"]["S"]) == (
        "PENDING",
        "create_reservation",
        sub_of(guest),
    )
    assert prop.property_id in item["arguments"]["S"]
    assert guest.access_token not in str(items)


@pytest.fixture(scope="module")
async def hasty(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway whose approvals expire at once."""
    async with running_gateway(devstack, settings.replace(chat_approval_ttl_seconds=0.001)) as running:
        yield running


@pytest.mark.parametrize("face_name", FACES)
async def test_an_expired_approval_is_refused_and_books_nothing(
    face_name: str, hasty: RunningGateway, aws: AwsClients, table: str
) -> None:
    face = ChatFace(face_name, hasty.channel, hasty.web_url)
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(hasty.devstack)
    turn = await asked(face, guest, prop)
    assert turn.approval is not None
    deadline = turn.approval.expires_at.ToNanoseconds() / 1e9
    await eventually(lambda: time.time() > deadline, timeout_seconds=5, what="the approval's expiry")

    with pytest.raises(ChatRefused) as expired:
        await face.send(decision(turn.session_id, turn.approval.approval_id, approve=True), guest.bearer())
    assert (expired.value.code, expired.value.reason) == ("failed_precondition", "APPROVAL_EXPIRED")
    assert await reservations_of(hasty, guest) == []

    # The next message tells the model the approval expired; nothing was booked.
    after = await face.say("thanks", turn.session_id, guest.bearer())
    assert [(t.name, t.ok, t.summary) for t in after.tools] == [
        ("create_reservation", False, "expired: nothing was booked")
    ]

"""Booking through the chat over the wire: the scripted agent's tools on the real reservation service, as guests
signed in to the emulator's pool, cross-checked with the ReservationService RPCs and the raw table."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator

import pytest

from booking.v1 import chat_pb2, reservations_pb2_grpc
from booking.v1 import reservations_pb2 as pb
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.domain import Property
from gateway.testing import eventually
from tests.support.chat import chat, decide, decision, stub
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.identity import emulator_sign_in
from tests.support.reservations import create_property, days_ahead, guest_items, night_locks


async def fresh_property(aws: AwsClients, table: str, capacity: int = 4) -> Property:
    """A property of this test's own, with a name the scripted agent can be told."""
    return await create_property(aws.dynamodb, table, capacity=capacity, name=f"Studio s{uuid.uuid4().hex[:8]}")


def stay_text(first: int, nights: int) -> tuple[str, datetime.date, datetime.date]:
    check_in, check_out = days_ahead(first), days_ahead(first + nights)
    return f"{check_in.isoformat()} to {check_out.isoformat()}", check_in, check_out


async def test_a_signed_in_guest_books_lists_and_cancels_through_the_chat(
    gateway: RunningGateway, aws: AwsClients, table: str
) -> None:
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(gateway.devstack)
    dates, check_in, check_out = stay_text(40, 3)

    available = await chat(gateway.channel, f"what's available {dates}?", metadata=guest.bearer())
    session_id = available.session_id
    assert [(t.name, t.ok) for t in available.tools] == [("check_availability", True)]
    assert prop.name in available.text

    asked = await chat(gateway.channel, f"book the {prop.name} for 3 guests", session_id, guest.bearer())
    assert asked.tools == []
    booked = await decide(gateway.channel, asked, guest.bearer())
    assert [(t.name, t.ok) for t in booked.tools] == [("create_reservation", True)]
    reservation_id = booked.tools[0].summary.split()[1].rstrip(":")
    assert reservation_id.startswith("RES-")
    assert reservation_id in booked.text

    # The unary RPC sees the same booking, owned by the bearer's person.
    reservations = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    answer = await reservations.GetReservation(
        pb.GetReservationRequest(reservation_id=reservation_id), metadata=guest.bearer(), timeout=10
    )
    found = answer.reservation
    assert (found.property_id, found.check_in, found.check_out, found.guests) == (
        prop.property_id,
        check_in.isoformat(),
        check_out.isoformat(),
        3,
    )

    mine = await chat(gateway.channel, "what are my reservations?", session_id, guest.bearer())
    assert reservation_id in mine.text

    asked_to_cancel = await chat(gateway.channel, f"cancel {reservation_id}", session_id, guest.bearer())
    cancelled = await decide(gateway.channel, asked_to_cancel, guest.bearer())
    assert [(t.name, t.ok) for t in cancelled.tools] == [("cancel_reservation", True)]
    after = await reservations.GetReservation(
        pb.GetReservationRequest(reservation_id=reservation_id), metadata=guest.bearer(), timeout=10
    )
    assert after.reservation.status == pb.RESERVATION_STATUS_CANCELLED
    assert await night_locks(aws.dynamodb, table, prop.property_id) == {}


async def test_an_anonymous_booking_asks_to_sign_in_and_books_nothing(
    gateway: RunningGateway, aws: AwsClients, table: str
) -> None:
    prop = await fresh_property(aws, table)
    dates, _, _ = stay_text(50, 2)

    first = await chat(gateway.channel, f"what's available {dates}?")
    asked = await chat(gateway.channel, f"book the {prop.name} for 2 guests", first.session_id)

    assert [(t.name, t.ok) for t in asked.tools] == [("check_availability", True)]
    assert "name and email" in asked.text
    assert asked.approval is None
    assert await night_locks(aws.dynamodb, table, prop.property_id) == {}


async def test_nights_already_taken_are_a_tool_failure_the_agent_explains(
    gateway: RunningGateway, aws: AwsClients, table: str
) -> None:
    prop = await fresh_property(aws, table)
    first_guest = await emulator_sign_in(gateway.devstack)
    second_guest = await emulator_sign_in(gateway.devstack)
    dates, check_in, _ = stay_text(60, 2)
    sessions = []
    for guest in (first_guest, second_guest):
        turn = await chat(gateway.channel, f"what's available {dates}?", metadata=guest.bearer())
        sessions.append(turn.session_id)

    asked = await chat(gateway.channel, f"book the {prop.name} for 2 guests", sessions[0], first_guest.bearer())
    won = await decide(gateway.channel, asked, first_guest.bearer())
    lost = await chat(gateway.channel, f"book the {prop.name} for 2 guests", sessions[1], second_guest.bearer())

    assert [(t.name, t.ok) for t in won.tools] == [("create_reservation", True)]
    assert [(t.name, t.ok) for t in lost.tools] == [("create_reservation", False)]
    assert "already booked" in lost.text
    assert check_in.isoformat() in lost.text
    assert lost.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN


@pytest.fixture(scope="module")
async def typing(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway whose scripted model pauses between words, so that a client can cancel mid-turn."""
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=50.0)) as running:
        yield running


async def test_cancelling_while_a_booking_runs_leaves_a_whole_booking_or_none(
    typing: RunningGateway, aws: AwsClients, table: str
) -> None:
    prop = await fresh_property(aws, table)
    guest = await emulator_sign_in(typing.devstack)
    dates, check_in, check_out = stay_text(70, 4)
    session_id = (await chat(typing.channel, f"what's available {dates}?", metadata=guest.bearer())).session_id

    asked = await chat(typing.channel, f"book the {prop.name} for 2 guests", session_id, guest.bearer())
    assert asked.approval is not None
    call = stub(typing.channel).Chat(
        decision(session_id, asked.approval.approval_id, approve=True), metadata=guest.bearer(), timeout=30
    )
    async for response in call:
        event = response.event
        if event.WhichOneof("kind") == "tool_call_started" and event.tool_call_started.name == "create_reservation":
            break
    call.cancel()

    await eventually(
        lambda: (
            typing.app.chat.load.open == 0
            and not [t for t in asyncio.all_tasks() if t.get_name().startswith("chat-turn-")]
        ),
        timeout_seconds=5,
    )
    assert typing.app.chat.load.open == 0

    # Whatever the race's outcome: every night locked belongs to one reservation the guest has, or none is.
    locks = await night_locks(aws.dynamodb, table, prop.property_id)
    items = await guest_items(aws.dynamodb, table, await _sub(typing, guest.access_token))
    reservation_ids = {item["reservation_id"]["S"] for item in items if item["SK"]["S"].startswith("RES#")}
    if locks:
        nights = [check_in + datetime.timedelta(days=n) for n in range((check_out - check_in).days)]
        assert sorted(locks) == nights
        assert set(locks.values()) == reservation_ids
        assert len(reservation_ids) == 1
    else:
        assert reservation_ids == set()

    # The session is free again, and the guest's list agrees with the table.
    mine = await chat(typing.channel, "what are my reservations?", session_id, guest.bearer(), timeout=20)
    assert all(rid in mine.text for rid in reservation_ids)


async def _sub(gateway: RunningGateway, access_token: str) -> str:
    return (await gateway.app.verifier.verify(access_token)).sub

"""Durable turns (issue 17) and approvals (issue 18) together, over gRPC.

A keep_running turn that asks for approval ends with AWAITING_APPROVAL and its ApprovalRequested is kept, so a
ResumeChat replays it (same id and summary); CancelTurn finds nothing running and the approval still waits. A
decision sent with keep_running runs in the gateway's task: its call may go away and the booking still happens,
exactly once, and a resume shows its result; the same decision again is refused. A kept message sent while an
approval waits withdraws it.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from grpc import aio

from booking.v1 import chat_pb2, reservations_pb2_grpc
from booking.v1 import reservations_pb2 as pb
from gateway.adapters.aws import AwsClients
from gateway.domain import Property
from tests.support.chat import Turn, decision, stub
from tests.support.gateway import RunningGateway
from tests.support.identity import Tokens, emulator_sign_in
from tests.support.reservations import create_property, days_ahead
from tests.support.status import reason_of


def without_tokens(events: list[chat_pb2.ChatEvent]) -> list[chat_pb2.ChatEvent]:
    """The events with the caller-only resume token cleared (to compare a live turn with its replay)."""
    copies = []
    for event in events:
        copy = chat_pb2.ChatEvent()
        copy.CopyFrom(event)
        if copy.WhichOneof("kind") == "session_started":
            copy.session_started.resume_token = ""
        copies.append(copy)
    return copies


async def kept(
    channel: aio.Channel, request: chat_pb2.ChatRequest, guest: Tokens, *, stop_after: int | None = None
) -> list[chat_pb2.ChatEvent]:
    """A keep_running Chat call; with `stop_after`, the call is cancelled once that many events arrived."""
    request.keep_running = True
    call = stub(channel).Chat(request, metadata=guest.bearer(), timeout=30)
    events: list[chat_pb2.ChatEvent] = []
    async for response in call:
        events.append(response.event)
        if stop_after is not None and len(events) >= stop_after:
            call.cancel()
            break
    return events


async def resume(
    channel: aio.Channel, session_id: str, after: int, token: str, guest: Tokens
) -> list[chat_pb2.ChatEvent]:
    call = stub(channel).ResumeChat(
        chat_pb2.ResumeChatRequest(session_id=session_id, after_sequence=after, resume_token=token),
        metadata=guest.bearer(),
        timeout=30,
    )
    return [response.event async for response in call]


async def reservations_of(gateway: RunningGateway, guest: Tokens) -> list[str]:
    stub_ = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    page = await stub_.ListReservations(pb.ListReservationsRequest(page_size=100), metadata=guest.bearer(), timeout=10)
    return [r.reservation_id for r in page.reservations if r.status == pb.RESERVATION_STATUS_CONFIRMED]


async def ask_to_book(gateway: RunningGateway, guest: Tokens, prop: Property, first: int) -> Turn:
    message = f"book the {prop.name} for 2 guests {days_ahead(first)} to {days_ahead(first + 2)}"
    turn = Turn(await kept(gateway.channel, chat_pb2.ChatRequest(message=message), guest))
    assert turn.approval is not None, (turn.kinds, turn.text)
    assert turn.complete.stop_reason == chat_pb2.STOP_REASON_AWAITING_APPROVAL
    assert turn.started.resume_token
    return turn


async def test_a_kept_turn_awaiting_approval_replays_the_approval_and_a_cut_decision_books_once(
    gateway: RunningGateway, aws: AwsClients, table: str
) -> None:
    prop = await create_property(aws.dynamodb, table, name=f"Studio s{uuid.uuid4().hex[:8]}")
    guest = await emulator_sign_in(gateway.devstack)
    asked = await ask_to_book(gateway, guest, prop, first=120)
    approval = asked.approval
    assert approval is not None
    session = asked.session_id

    # The kept turn replays whole, the approval included (same id, summary, deadline), then the stream ends.
    replay = await resume(gateway.channel, session, 0, asked.started.resume_token, guest)
    assert without_tokens(replay) == without_tokens(asked.events)
    assert Turn(replay).approval == approval
    # Nothing runs while the approval waits: CancelTurn says so and leaves the approval alone.
    cancelled = await stub(gateway.channel).CancelTurn(
        chat_pb2.CancelTurnRequest(session_id=session, resume_token=asked.started.resume_token),
        metadata=guest.bearer(),
        timeout=10,
    )
    assert cancelled.cancelled is False
    assert await reservations_of(gateway, guest) == []

    # The decision as a kept turn whose call goes away after its first event: the gateway runs it to its end.
    first = await kept(gateway.channel, decision(session, approval.approval_id, approve=True), guest, stop_after=1)
    started = first[0].session_started
    assert started.resume_token
    assert started.resume_token != asked.started.resume_token
    rest = await resume(gateway.channel, session, first[-1].sequence, started.resume_token, guest)
    done = Turn(without_tokens(first + rest))
    assert done.sequences == list(range(done.sequences[0], done.sequences[0] + len(done.events)))
    assert done.sequences[0] == asked.sequences[-1] + 1
    assert [(t.name, t.ok) for t in done.tools] == [("create_reservation", True)]
    assert done.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    assert len(await reservations_of(gateway, guest)) == 1

    # Deciding again (kept or not) is refused, and still one reservation.
    with pytest.raises(aio.AioRpcError) as again:
        await kept(gateway.channel, decision(session, approval.approval_id, approve=True), guest)
    assert reason_of(again.value) == (grpc.StatusCode.FAILED_PRECONDITION, "APPROVAL_ALREADY_USED")
    assert len(await reservations_of(gateway, guest)) == 1


async def test_a_kept_message_withdraws_a_waiting_approval(
    gateway: RunningGateway, aws: AwsClients, table: str
) -> None:
    prop = await create_property(aws.dynamodb, table, name=f"Studio s{uuid.uuid4().hex[:8]}")
    guest = await emulator_sign_in(gateway.devstack)
    asked = await ask_to_book(gateway, guest, prop, first=130)
    approval = asked.approval
    assert approval is not None

    withdrawn = Turn(
        await kept(gateway.channel, chat_pb2.ChatRequest(session_id=asked.session_id, message="yes"), guest)
    )
    assert [(t.name, t.ok, t.summary) for t in withdrawn.tools] == [
        ("create_reservation", False, "withdrawn: nothing was booked")
    ]
    assert withdrawn.approval is None
    assert withdrawn.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    # The withdrawal is kept like any event: a resume from before the turn replays it.
    token = withdrawn.started.resume_token
    replay = await resume(gateway.channel, asked.session_id, asked.sequences[-1], token, guest)
    assert without_tokens(replay) == without_tokens(withdrawn.events)
    with pytest.raises(aio.AioRpcError) as late:
        await kept(gateway.channel, decision(asked.session_id, approval.approval_id, approve=True), guest)
    assert reason_of(late.value) == (grpc.StatusCode.FAILED_PRECONDITION, "APPROVAL_ALREADY_USED")
    assert await reservations_of(gateway, guest) == []

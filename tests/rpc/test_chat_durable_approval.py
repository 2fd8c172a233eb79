"""Durable turns (issue 17) and approvals (issue 18) together, over gRPC.

A keep_running turn that asks for approval ends with AWAITING_APPROVAL and its ApprovalRequested is kept, so a
ResumeChat replays it (same id and summary); CancelTurn finds nothing running and the approval still waits. A
decision sent with keep_running runs in the gateway's task: its call may go away and the booking still happens,
exactly once, and a resume shows its result; the same decision again is refused. A kept message sent while an
approval waits withdraws it. CancelTurn in the window between the approval being stored (and sent) and the
turn's TurnComplete leaves the approval pending and the session free; it ends the turn CANCELLED only when the
model asked for more work in the same reply. CancelTurn while the approval is still being written (before it was
sent) ends the turn CANCELLED and withdraws the approval once its write lands: none waits that nobody was shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from booking.v1 import chat_pb2, reservations_pb2_grpc
from booking.v1 import reservations_pb2 as pb
from gateway.adapters.aws import AwsClients, AwsTarget
from gateway.adapters.dynamodb.keys import (
    CHAT_APPROVAL_PREFIX,
    PK,
    SK,
    chat_approval_key,
    chat_partition,
    chat_session_key,
)
from gateway.app import gateway_server, open_app
from gateway.config import Settings
from gateway.domain import Property
from tests.support.bedrock import FakeBedrock, text_reply, tools_reply
from tests.support.chat import Turn, decision, stub
from tests.support.faults import FaultyDynamo
from tests.support.gateway import RunningGateway, running_gateway
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


async def until_approval(
    call: aio.UnaryStreamCall[chat_pb2.ChatRequest, chat_pb2.ChatResponse],
) -> list[chat_pb2.ChatEvent]:
    """The events of a Chat call up to its ApprovalRequested (the call stays open)."""
    seen: list[chat_pb2.ChatEvent] = []
    while not seen or seen[-1].WhichOneof("kind") != "approval_requested":
        response = await call.read()
        assert isinstance(response, chat_pb2.ChatResponse), [e.WhichOneof("kind") for e in seen]
        seen.append(response.event)
    return seen


@contextlib.asynccontextmanager
async def replica_behind_a_proxy(
    gateway: RunningGateway, settings: Settings
) -> AsyncIterator[tuple[FaultyDynamo, aio.Channel]]:
    """Another replica (a gateway with its own memory) whose DynamoDB calls go through a proxy, and a channel to it."""
    endpoints = gateway.devstack.endpoints
    async with (
        FaultyDynamo(endpoints.endpoint_url) as proxy,
        open_app(
            settings, dataclasses.replace(endpoints.target, endpoint_url=proxy.url), trust_emulator_keys=True
        ) as app,
        gateway_server(app, settings) as server,
        aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield proxy, channel


async def test_cancel_turn_after_the_approval_is_asked_and_before_the_turn_ends_leaves_one_awaiting_turn(
    gateway: RunningGateway, settings: Settings, aws: AwsClients, table: str
) -> None:
    """The window between a kept turn storing its approval (ApprovalRequested sent) and its TurnComplete, held
    open at the wire: the turn's record (the PutItem of its TURN# item) waits at a proxy in front of DynamoDB.

    CancelTurn there finds nothing to stop: the model and tools are done, the rest is bookkeeping. On the turn's
    replica it answers false; from another replica (which can only ask through the table) it answers true, and
    the request is dropped when the turn is recorded. Either way the turn ends once, AWAITING_APPROVAL, the
    approval stays decidable, and the session is free for the decision's turn, which books once.
    """
    prop = await create_property(aws.dynamodb, table, name=f"Studio s{uuid.uuid4().hex[:8]}")
    guest = await emulator_sign_in(gateway.devstack)
    async with replica_behind_a_proxy(gateway, settings) as (proxy, channel):
        recorded = proxy.hold("PutItem", b"TURN#")
        message = f"book the {prop.name} for 2 guests {days_ahead(160)} to {days_ahead(162)}"
        request = chat_pb2.ChatRequest(message=message, keep_running=True)
        call = stub(channel).Chat(request, metadata=guest.bearer(), timeout=30)
        seen = await until_approval(call)
        asked = Turn(seen)
        approval = asked.approval
        assert approval is not None
        await asyncio.wait_for(recorded.arrived.wait(), 10)
        # In the window: the approval is stored and pending, the turn not recorded, its lease still held.
        item = await aws.dynamodb.get_item(
            TableName=table, Key=chat_approval_key(asked.session_id, approval.approval_id), ConsistentRead=True
        )
        assert item["Item"]["state"]["S"] == "PENDING"
        session = await aws.dynamodb.get_item(
            TableName=table, Key=chat_session_key(asked.session_id), ConsistentRead=True
        )
        assert "lease_id" in session["Item"]

        cancel = chat_pb2.CancelTurnRequest(session_id=asked.session_id, resume_token=asked.started.resume_token)
        here = await stub(channel).CancelTurn(cancel, metadata=guest.bearer(), timeout=10)
        elsewhere = await stub(gateway.channel).CancelTurn(cancel, metadata=guest.bearer(), timeout=10)
        assert (here.cancelled, elsewhere.cancelled) == (False, True)

        # The caller hears the TurnComplete only once the turn is recorded and its session freed: not while the
        # session's update (the second write of the record) waits at the proxy.
        freeing = proxy.hold("UpdateItem", b"REMOVE lease_id, lease_until, kept_lease")
        ending = asyncio.ensure_future(call.read())
        recorded.release.set()
        await asyncio.wait_for(freeing.arrived.wait(), 10)
        assert not ending.done()
        freeing.release.set()
        rest: list[chat_pb2.ChatEvent] = []
        response = await ending
        while isinstance(response, chat_pb2.ChatResponse):
            rest.append(response.event)
            response = await call.read()
        whole = Turn(seen + rest)
        assert [e.WhichOneof("kind") for e in rest] == ["turn_complete"]
        assert whole.complete.stop_reason == chat_pb2.STOP_REASON_AWAITING_APPROVAL
        assert whole.sequences == list(range(whole.sequences[0], whole.sequences[0] + len(whole.events)))
        # Kept as sent: one TurnComplete, no CANCELLED anywhere.
        replay = await resume(gateway.channel, asked.session_id, 0, asked.started.resume_token, guest)
        assert without_tokens(replay) == without_tokens(whole.events)

    # Recorded and freed: no lease left, and no cancel request waiting for the next turn.
    session = await aws.dynamodb.get_item(TableName=table, Key=chat_session_key(asked.session_id), ConsistentRead=True)
    assert not {"lease_id", "kept_lease", "cancel_lease"} & set(session["Item"])
    assert await reservations_of(gateway, guest) == []
    # The approval is still the person's to decide: a kept decision on the other replica books, once.
    decided = Turn(await kept(gateway.channel, decision(asked.session_id, approval.approval_id, approve=True), guest))
    assert decided.sequences[0] == whole.sequences[-1] + 1
    assert [(t.name, t.ok) for t in decided.tools] == [("create_reservation", True)]
    assert decided.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    assert len(await reservations_of(gateway, guest)) == 1


async def test_cancel_turn_while_the_approval_is_being_written_ends_cancelled_and_leaves_no_approval_waiting(
    gateway: RunningGateway, settings: Settings, aws: AwsClients, table: str
) -> None:
    """The approval's write (its PutItem) held at a proxy in front of DynamoDB, and CancelTurn comes.

    A write cut short may still land (this one does once the proxy lets it go): the turn finishes it, withdraws
    it and only then ends, CANCELLED, without an ApprovalRequested. Nothing waits in the table that the person was
    never shown, and the next message in the session is answered as usual (no approval to withdraw).
    """
    prop = await create_property(aws.dynamodb, table, name=f"Studio w{uuid.uuid4().hex[:8]}")
    guest = await emulator_sign_in(gateway.devstack)
    async with replica_behind_a_proxy(gateway, settings) as (proxy, channel):
        writing = proxy.hold("PutItem", CHAT_APPROVAL_PREFIX.encode())
        message = f"book the {prop.name} for 2 guests {days_ahead(190)} to {days_ahead(192)}"
        request = chat_pb2.ChatRequest(message=message, keep_running=True)
        call = stub(channel).Chat(request, metadata=guest.bearer(), timeout=30)
        first = await call.read()
        assert isinstance(first, chat_pb2.ChatResponse)
        started = first.event.session_started
        await asyncio.wait_for(writing.arrived.wait(), 10)

        cancel = chat_pb2.CancelTurnRequest(session_id=started.session_id, resume_token=started.resume_token)
        answer = await stub(channel).CancelTurn(cancel, metadata=guest.bearer(), timeout=10)
        assert answer.cancelled is True
        writing.release.set()
        rest: list[chat_pb2.ChatEvent] = []
        while isinstance(response := await call.read(), chat_pb2.ChatResponse):
            rest.append(response.event)
        whole = Turn([first.event, *rest])
        assert whole.approval is None, whole.kinds
        assert whole.complete.stop_reason == chat_pb2.STOP_REASON_CANCELLED

    approvals = await aws.dynamodb.query(
        TableName=table,
        KeyConditionExpression=f"{PK} = :pk AND begins_with({SK}, :prefix)",
        ExpressionAttributeValues={
            ":pk": {"S": chat_partition(started.session_id)},
            ":prefix": {"S": CHAT_APPROVAL_PREFIX},
        },
        ConsistentRead=True,
    )
    assert [item["state"]["S"] for item in approvals["Items"]] == ["WITHDRAWN"]
    session = await aws.dynamodb.get_item(
        TableName=table, Key=chat_session_key(started.session_id), ConsistentRead=True
    )
    assert not {"lease_id", "kept_lease", "cancel_lease"} & set(session["Item"])
    after = Turn(
        await kept(gateway.channel, chat_pb2.ChatRequest(message="thanks", session_id=started.session_id), guest)
    )
    assert after.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    assert after.tools == [], after.kinds
    assert await reservations_of(gateway, guest) == []


async def test_cancel_turn_while_a_later_tool_of_the_same_reply_runs_ends_cancelled_and_the_approval_still_waits(
    gateway: RunningGateway, settings: Settings, aws: AwsClients, table: str
) -> None:
    """A model (Bedrock's, at a fake endpoint) that asks, in one reply, to book and then to check another
    property: the booking is held for approval (ApprovalRequested sent), then the check runs, its property read
    held at a proxy in front of DynamoDB, and CancelTurn comes.

    The cancel stops what still runs (the check, answered "stopped"); the approval already asked for is the
    person's, not the turn's: the turn ends once, CANCELLED, the approval stays pending, and the decision's turn
    books once. The stored conversation answers every tool use before the model reads it again.
    """
    booked = await create_property(aws.dynamodb, table, name=f"Studio s{uuid.uuid4().hex[:8]}")
    checked = await create_property(aws.dynamodb, table, name=f"Studio c{uuid.uuid4().hex[:8]}")
    guest = await emulator_sign_in(gateway.devstack)
    endpoints = gateway.devstack.endpoints
    stay = {"check_in": days_ahead(170).isoformat(), "check_out": days_ahead(172).isoformat()}
    fake = FakeBedrock()
    await fake.start()
    fake.script(
        tools_reply(
            "Booking it, and checking the other one.",
            ("tooluse-book", "create_reservation", {"property_id": booked.property_id, **stay, "guests": 2}),
            ("tooluse-check", "check_availability", {"property_id": checked.property_id, **stay}),
        ),
        text_reply("Booked."),
    )
    model = AwsTarget(region="us-east-1", endpoint_url=fake.url, access_key_id="fake", secret_access_key="fake")
    try:
        async with (
            FaultyDynamo(endpoints.endpoint_url) as proxy,
            running_gateway(
                gateway.devstack,
                settings.replace(agent_model="bedrock", bedrock_endpoint_url=fake.url),
                target=dataclasses.replace(endpoints.target, endpoint_url=proxy.url),
                bedrock=model,
            ) as replica,
        ):
            checking = proxy.hold("GetItem", checked.property_id.encode())
            request = chat_pb2.ChatRequest(message="book the studio and check the other", keep_running=True)
            call = stub(replica.channel).Chat(request, metadata=guest.bearer(), timeout=30)
            seen = await until_approval(call)
            asked = Turn(seen)
            approval = asked.approval
            assert approval is not None
            await asyncio.wait_for(checking.arrived.wait(), 10)

            cancel = chat_pb2.CancelTurnRequest(session_id=asked.session_id, resume_token=asked.started.resume_token)
            answer = await stub(replica.channel).CancelTurn(cancel, metadata=guest.bearer(), timeout=10)
            assert answer.cancelled is True
            rest: list[chat_pb2.ChatEvent] = []
            while isinstance(response := await call.read(), chat_pb2.ChatResponse):
                rest.append(response.event)
            whole = Turn(seen + rest)
            assert [e.WhichOneof("kind") for e in whole.of("turn_complete")] == ["turn_complete"]
            assert whole.complete.stop_reason == chat_pb2.STOP_REASON_CANCELLED
            assert [(t.name, t.ok, t.summary) for t in whole.tools] == [
                ("check_availability", False, "stopped: the turn was stopped")
            ]
            replay = await resume(replica.channel, asked.session_id, 0, asked.started.resume_token, guest)
            assert without_tokens(replay) == without_tokens(whole.events)

            item = await aws.dynamodb.get_item(
                TableName=table, Key=chat_approval_key(asked.session_id, approval.approval_id), ConsistentRead=True
            )
            assert item["Item"]["state"]["S"] == "PENDING"
            session = await aws.dynamodb.get_item(
                TableName=table, Key=chat_session_key(asked.session_id), ConsistentRead=True
            )
            assert not {"lease_id", "kept_lease", "cancel_lease"} & set(session["Item"])
            assert await reservations_of(gateway, guest) == []

            decided = Turn(
                await kept(replica.channel, decision(asked.session_id, approval.approval_id, approve=True), guest)
            )
            assert decided.sequences[0] == whole.sequences[-1] + 1
            assert [(t.name, t.ok) for t in decided.tools] == [("create_reservation", True)]
            assert decided.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
            assert len(await reservations_of(gateway, guest)) == 1
            # What the model read after the decision: both tool uses of its reply answered, in one user message.
            last_user = fake.requests[-1]["messages"][-1]
            assert last_user["role"] == "user"
            answered = {
                block["toolResult"]["toolUseId"]: block["toolResult"]["status"] for block in last_user["content"]
            }
            assert answered == {"tooluse-check": "error", "tooluse-book": "success"}
    finally:
        await fake.stop()

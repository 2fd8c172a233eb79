"""Durable chat turns over the wire (gRPC face): keep_running, ResumeChat, CancelTurn, sealed TokenDelivery replay.

The gateway's scripted agent types a word every 30 ms, so a client can leave in the middle of a turn. Replicas
over one table are in tests/scaleout/test_durable_replicas.py; the web face in tests/web/test_durable_web.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from booking.v1 import chat_pb2
from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb.keys import PK, chat_partition
from gateway.config import Settings
from gateway.devstack import DevStack
from tests.support.auth import new_email
from tests.support.chat import Turn, chat, stub
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.status import error_info, reason_of

HELP = "help, what can you do"


@pytest.fixture(scope="module")
async def typing_gateway(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway whose scripted agent types a word every 30 ms."""
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=30.0)) as running:
        yield running


async def kept_events(
    channel: aio.Channel, message: str, session_id: str = "", *, stop_after: int | None = None
) -> list[chat_pb2.ChatEvent]:
    """A keep_running Chat call; with `stop_after`, the call is cancelled once that many events arrived."""
    call = stub(channel).Chat(
        chat_pb2.ChatRequest(session_id=session_id, message=message, keep_running=True), timeout=30
    )
    events: list[chat_pb2.ChatEvent] = []
    async for response in call:
        events.append(response.event)
        if stop_after is not None and len(events) >= stop_after:
            call.cancel()
            break
    return events


async def resume(
    channel: aio.Channel, session_id: str, after: int, token: str, metadata: tuple[tuple[str, str], ...] = ()
) -> list[chat_pb2.ChatEvent]:
    call = stub(channel).ResumeChat(
        chat_pb2.ResumeChatRequest(session_id=session_id, after_sequence=after, resume_token=token),
        metadata=metadata,
        timeout=30,
    )
    return [response.event async for response in call]


def without_tokens(events: list[chat_pb2.ChatEvent]) -> list[chat_pb2.ChatEvent]:
    """The events with the caller-only resume token cleared (to compare transcripts)."""
    copies = []
    for event in events:
        copy = chat_pb2.ChatEvent()
        copy.CopyFrom(event)
        if copy.WhichOneof("kind") == "session_started":
            copy.session_started.resume_token = ""
        copies.append(copy)
    return copies


async def test_a_keep_running_turn_gives_its_caller_a_resume_token_and_a_plain_turn_none(
    gateway: RunningGateway,
) -> None:
    kept = Turn(await kept_events(gateway.channel, "hello"))
    assert len(kept.started.resume_token) >= 40
    assert kept.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    plain = await chat(gateway.channel, "hello")
    assert plain.started.resume_token == ""
    assert plain.text == kept.text


async def test_a_turn_cut_mid_answer_goes_on_and_a_resume_gives_exactly_the_missed_events_then_the_live_rest(
    typing_gateway: RunningGateway,
) -> None:
    channel = typing_gateway.channel
    reference = await chat(channel, HELP)
    first = await kept_events(channel, HELP, stop_after=3)
    started = first[0].session_started
    rest = await resume(channel, started.session_id, first[-1].sequence, started.resume_token)
    whole = Turn(without_tokens(first + rest))
    assert whole.sequences == list(range(1, len(whole.events) + 1))
    assert whole.text == reference.text
    assert whole.outline == reference.outline
    assert whole.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    # Once over, the turn replays from the start and the stream ends.
    again = await resume(channel, started.session_id, 0, started.resume_token)
    assert without_tokens(again) == whole.events
    # The session takes the next message.
    after = await chat(channel, "hello", started.session_id)
    assert after.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    assert after.sequences[0] == whole.sequences[-1] + 1


async def test_cancel_turn_stops_a_kept_turn_with_cancelled_and_the_session_goes_on(
    typing_gateway: RunningGateway,
) -> None:
    channel = typing_gateway.channel
    first = await kept_events(channel, HELP, stop_after=2)
    started = first[0].session_started
    answer = await stub(channel).CancelTurn(
        chat_pb2.CancelTurnRequest(session_id=started.session_id, resume_token=started.resume_token), timeout=10
    )
    assert answer.cancelled
    rest = Turn(await resume(channel, started.session_id, first[-1].sequence, started.resume_token))
    assert rest.complete.stop_reason == chat_pb2.STOP_REASON_CANCELLED
    again = await stub(channel).CancelTurn(
        chat_pb2.CancelTurnRequest(session_id=started.session_id, resume_token=started.resume_token), timeout=10
    )
    assert not again.cancelled
    after = await chat(channel, "hello", started.session_id)
    assert after.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    assert after.sequences[0] == rest.sequences[-1] + 1


async def test_resume_and_cancel_refuse_bad_requests_each_with_its_reason(typing_gateway: RunningGateway) -> None:
    channel = typing_gateway.channel
    events = await kept_events(channel, "hello")
    started = events[0].session_started
    sid, token = started.session_id, started.resume_token
    chat_stub = stub(channel)

    async def resume_error(session_id: str, after: int, resume_token: str) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await resume(channel, session_id, after, resume_token)
        return caught.value

    unknown = await resume_error("A" * 22, 0, token)
    assert reason_of(unknown) == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    wrong = await resume_error(sid, 0, "x" * 43)
    assert reason_of(wrong) == (grpc.StatusCode.PERMISSION_DENIED, "RESUME_TOKEN_INVALID")
    missing = await resume_error(sid, 0, "")
    assert reason_of(missing) == (grpc.StatusCode.PERMISSION_DENIED, "RESUME_TOKEN_INVALID")
    ahead = await resume_error(sid, events[-1].sequence + 1, token)
    assert reason_of(ahead) == (grpc.StatusCode.INVALID_ARGUMENT, "RESUME_SEQUENCE_AHEAD")
    malformed = await resume_error("no", 0, token)
    assert reason_of(malformed) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    for request in (
        chat_pb2.CancelTurnRequest(session_id=sid, resume_token="y" * 43),
        chat_pb2.CancelTurnRequest(session_id=sid),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await chat_stub.CancelTurn(request, timeout=10)
        assert reason_of(caught.value) == (grpc.StatusCode.PERMISSION_DENIED, "RESUME_TOKEN_INVALID")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chat_stub.CancelTurn(chat_pb2.CancelTurnRequest(session_id="B" * 22, resume_token=token), timeout=10)
    assert reason_of(caught.value) == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    # A plain turn's events are not kept: asking for them says which is the oldest still kept.
    plain = await chat(channel, "hello", sid)
    expired = await resume_error(sid, events[-1].sequence, token)
    assert reason_of(expired) == (grpc.StatusCode.FAILED_PRECONDITION, "RESUME_EVENTS_EXPIRED")
    assert error_info(expired).metadata["oldest_sequence"] == "0"
    assert plain.sequences[-1] > events[-1].sequence
    # The kept turn's own events are still there.
    assert without_tokens(await resume(channel, sid, 0, token)) == without_tokens(events)


async def test_kept_events_are_written_in_batches_not_per_delta(
    typing_gateway: RunningGateway, aws: AwsClients, table: str
) -> None:
    started_at = time.monotonic()
    events = await kept_events(typing_gateway.channel, HELP)
    duration = time.monotonic() - started_at
    sid = events[0].session_started.session_id
    answer = await aws.dynamodb.query(
        TableName=table,
        KeyConditionExpression=f"{PK} = :pk AND begins_with(SK, :events)",
        ExpressionAttributeValues={":pk": {"S": chat_partition(sid)}, ":events": {"S": "EVENTS#"}},
        ConsistentRead=True,
    )
    batches = len(answer["Items"])
    deltas = len(Turn(events).of("text_delta"))
    assert deltas > 10
    assert 1 <= batches <= duration / 0.25 + 2, (batches, deltas, duration)


async def test_a_kept_sign_in_replays_its_tokens_only_to_the_resume_token_and_the_table_and_logs_hold_neither(
    gateway: RunningGateway, devstack: DevStack, aws: AwsClients, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway")
    channel = gateway.channel
    email = new_email()
    first = await kept_events(channel, f"Jane Roe, {email}")
    started = first[0].session_started
    sid, token = started.session_id, started.resume_token
    code = await devstack.mailbox.wait_for_code(email, wait_seconds=30)
    # The sign-in turn is kept too; its own token is the key to its TokenDelivery.
    signed = await kept_events(channel, code, sid)
    delivered = Turn(signed).token_delivery
    assert delivered is not None
    assert delivered.access_token
    sign_in_token = signed[0].session_started.resume_token
    replay = Turn(await resume(channel, sid, signed[0].sequence - 1, sign_in_token))
    assert replay.token_delivery == delivered
    # Another turn's token may resume (it was the session's) but is refused now that a newer one exists;
    # the owner's bearer without a token resumes, and gets only the marker.
    bearer = (("authorization", f"Bearer {delivered.access_token}"),)
    owner_replay = Turn(await resume(channel, sid, signed[0].sequence - 1, "", metadata=bearer))
    assert owner_replay.token_delivery is None
    assert [e.token_delivery_expired.guest_id for e in owner_replay.of("token_delivery_expired")] == [
        delivered.guest_id
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await resume(channel, sid, 0, token)
    assert reason_of(caught.value) == (grpc.StatusCode.PERMISSION_DENIED, "RESUME_TOKEN_INVALID")
    # Nothing in the table reads as a token or a resume token.
    items = []
    scan = await aws.dynamodb.scan(TableName=table)
    items.extend(scan["Items"])
    while "LastEvaluatedKey" in scan:
        scan = await aws.dynamodb.scan(TableName=table, ExclusiveStartKey=scan["LastEvaluatedKey"])
        items.extend(scan["Items"])
    dump = repr(items)
    # The gateway's own log lines (the emulator in this process logs its HTTP bodies at DEBUG).
    logged = repr([record.__dict__ for record in caplog.records if record.name.startswith("gateway")])
    assert logged != "[]"
    for secret in (delivered.access_token, delivered.refresh_token, token, sign_in_token):
        assert secret not in logged
    for secret in (delivered.access_token, delivered.refresh_token, delivered.id_token, token, sign_in_token):
        assert secret not in dump
    assert any(item[PK]["S"] == chat_partition(sid) and item["SK"]["S"].startswith("SEALED#") for item in items)


async def test_a_kept_turn_on_a_drained_gateway_ends_interrupted_and_recorded(
    devstack: DevStack, settings: Settings
) -> None:
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=200.0)) as running:
        first = await kept_events(running.channel, HELP, stop_after=2)
        started = first[0].session_started
        # No call follows the turn: the drain finds it running after the open calls and interrupts it.
        await running.server.drain(grace_seconds=0.3)
    async with running_gateway(devstack, settings) as other:
        replay = Turn(await resume(other.channel, started.session_id, 0, started.resume_token))
        assert replay.complete.stop_reason == chat_pb2.STOP_REASON_INTERRUPTED
        after = await chat(other.channel, "hello", started.session_id)
        assert after.sequences[0] == replay.sequences[-1] + 1

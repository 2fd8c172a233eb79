"""Durable chat turns across two `gateway serve` replicas over one table.

A keep_running turn started on replica A, its call cut, is resumed on replica B from the table (events and the
sealed TokenDelivery); CancelTurn sent to B stops the turn running on A; a drained A ends its turn INTERRUPTED
for B's follower at once, and a SIGKILLed A's turn ends INTERRUPTED once its lease has run out.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from grpc import aio

from booking.v1 import chat_pb2
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.devstack.bootstrap import ensure_table
from tests.rpc.test_chat_durable import HELP, kept_events, resume, without_tokens
from tests.scaleout.replicas import running_replicas
from tests.support.auth import new_email
from tests.support.chat import Turn, chat, stub
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.slow

# A turn's lease outlives its time bound by 10 s: a short bound keeps the SIGKILL test short; long enough that
# the 3 s answer (58 words at 50 ms) ends well within it on a loaded machine.
TURN_TIMEOUT_SECONDS = 8.0


@pytest.fixture(scope="module")
async def table(aws: AwsClients) -> AsyncIterator[str]:
    name = f"booking-gateway-durable-{uuid.uuid4().hex[:8]}"
    await ensure_table(aws, name)
    try:
        yield name
    finally:
        await aws.dynamodb.delete_table(TableName=name)


def replica_settings(settings: Settings, table: str) -> Settings:
    return settings.replace(
        table_name=table,
        scripted_delta_delay_ms=50.0,
        chat_turn_timeout_seconds=TURN_TIMEOUT_SECONDS,
        grace_seconds=0.5,
        aws_timeout_seconds=30.0,
    )


@pytest.fixture(scope="module")
async def pair(settings: Settings, table: str) -> AsyncIterator[list[GatewayProcess]]:
    """Two replicas on one table of the emulator."""
    async with running_replicas(replica_settings(settings, table), 2) as started:
        yield started


async def channels(replicas: list[GatewayProcess]) -> list[aio.Channel]:
    return [aio.insecure_channel(f"127.0.0.1:{replica.port}") for replica in replicas]


async def test_a_turn_cut_on_one_replica_resumes_whole_on_the_other_with_its_sealed_tokens(
    pair: list[GatewayProcess], devstack: DevStack
) -> None:
    a, b = await channels(pair)
    try:
        reference = await chat(a, HELP)
        first = await kept_events(a, HELP, stop_after=3)
        started = first[0].session_started
        rest = await resume(b, started.session_id, first[-1].sequence, started.resume_token)
        whole = Turn(without_tokens(first + rest))
        assert whole.sequences == list(range(1, len(whole.events) + 1))
        assert whole.outline == reference.outline
        assert whole.text == reference.text
        # A sign-in turn on A, cut before its TokenDelivery arrives: B opens it with the resume token only.
        email = new_email()
        asked = await kept_events(a, f"Jane Roe, {email}")
        sid = asked[0].session_started.session_id
        code = await devstack.mailbox.wait_for_code(email, wait_seconds=30)
        cut = await kept_events(a, code, sid, stop_after=1)
        token = cut[0].session_started.resume_token
        replay = Turn(await resume(b, sid, cut[-1].sequence, token))
        assert replay.token_delivery is not None
        assert replay.token_delivery.access_token
        assert replay.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
        assert replay.sequences[0] == cut[-1].sequence + 1
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_cancel_turn_on_the_other_replica_stops_the_turn_through_the_table(pair: list[GatewayProcess]) -> None:
    a, b = await channels(pair)
    try:
        first = await kept_events(a, HELP, stop_after=2)
        started = first[0].session_started
        follower = asyncio.ensure_future(resume(a, started.session_id, first[-1].sequence, started.resume_token))
        sent = time.monotonic()
        answer = await stub(b).CancelTurn(
            chat_pb2.CancelTurnRequest(session_id=started.session_id, resume_token=started.resume_token), timeout=10
        )
        assert answer.cancelled
        rest = Turn(await follower)
        stopped_after = time.monotonic() - sent
        assert rest.complete.stop_reason == chat_pb2.STOP_REASON_CANCELLED
        # The reply would have taken its whole length at 50 ms a word; it stopped within the poll interval.
        print(f"CancelTurn on the other replica to TurnComplete: {stopped_after * 1000:.0f} ms")
        assert len(Turn(first).text + rest.text) < len((await chat(b, HELP)).text)
        after = await chat(b, "hello", started.session_id)
        assert after.sequences[0] == rest.sequences[-1] + 1
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_a_drained_replica_ends_its_kept_turn_interrupted_for_a_follower_on_the_other(
    settings: Settings, table: str
) -> None:
    async with running_replicas(replica_settings(settings, table), 2) as (first_replica, second_replica):
        a, b = await channels([first_replica, second_replica])
        try:
            first = await kept_events(a, HELP, stop_after=2)
            started = first[0].session_started
            follower = asyncio.ensure_future(resume(b, started.session_id, first[-1].sequence, started.resume_token))
            first_replica.signal_group(signal.SIGTERM)
            rest = Turn(await asyncio.wait_for(follower, TURN_TIMEOUT_SECONDS + 5))
            assert rest.complete.stop_reason == chat_pb2.STOP_REASON_INTERRUPTED
            assert await first_replica.wait(timeout=30) == 0
            after = await chat(b, "hello", started.session_id)
            assert after.sequences[0] == rest.sequences[-1] + 1
        finally:
            await asyncio.gather(a.close(), b.close())


async def test_a_killed_replicas_turn_ends_interrupted_once_its_lease_runs_out_and_the_session_goes_on(
    settings: Settings, table: str
) -> None:
    async with running_replicas(replica_settings(settings, table), 2) as (first_replica, second_replica):
        a, b = await channels([first_replica, second_replica])
        try:
            first = await kept_events(a, HELP, stop_after=2)
            started = first[0].session_started
            follower = asyncio.ensure_future(resume(b, started.session_id, first[-1].sequence, started.resume_token))
            first_replica.signal_group(signal.SIGKILL)
            rest = Turn(await asyncio.wait_for(follower, TURN_TIMEOUT_SECONDS + 10 + 10))
            assert rest.complete.stop_reason == chat_pb2.STOP_REASON_INTERRUPTED
            # Numbered after anything A may have sent live without keeping it: no sequence means two things.
            assert rest.sequences[0] > first[-1].sequence
            after = await chat(b, "hello", started.session_id)
            assert after.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
            replay = Turn(await resume(b, started.session_id, 0, started.resume_token))
            assert replay.events[-1] == rest.events[-1]
            assert after.sequences[0] == rest.sequences[-1] + 1
            # The client that saw A's last events live resumes after them and gets the same end.
            late = Turn(await resume(b, started.session_id, first[-1].sequence, started.resume_token))
            assert late.events == rest.events
        finally:
            await asyncio.gather(a.close(), b.close())

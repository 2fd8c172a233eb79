"""Soak: thousands of sequential chat turns against one gateway: memory stays bounded, nothing is left behind.

The turns run in short sessions (a greeting, an availability check with its tool call, thanks, ...) with the
scripted model at full speed. The emulator in the test process is the slow part (about 40 ms a turn on two
loaded cores), so the default count is 600 (about half a minute); `BOOKING_SOAK_TURNS=5000 make test` (or pytest
on this file) is the full run of issue 9: about ten minutes here, as the emulator slows down while its table grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from grpc import aio

from booking.v1 import chat_pb2
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.testing import eventually
from tests.scaleout.replicas import json_logs, mib, open_fds, rss_bytes, start_replica
from tests.support.chat import chat
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.reservations import create_property, days_ahead

pytestmark = pytest.mark.slow

SOAK_TURNS = int(os.environ.get("BOOKING_SOAK_TURNS", "600"))
TURNS_PER_SESSION = 10
WARM_UP_TURNS = 100
RSS_GROWTH_LIMIT_BYTES = 100 * 2**20
FD_GROWTH_LIMIT = 20
TASK_CHECK_TURNS = 100


def _message(turn_in_session: int) -> str:
    if turn_in_session % TURNS_PER_SESSION == 1:
        return f"what's available {days_ahead(30).isoformat()} to {days_ahead(33).isoformat()}?"
    return "hello" if turn_in_session % 2 == 0 else "thanks"


async def _soak(channel: aio.Channel, turns: int, first: int = 0) -> None:
    """`turns` sequential turns in sessions of TURNS_PER_SESSION; each one complete, numbering unbroken."""
    session_id = ""
    next_sequence = 1
    for n in range(first, first + turns):
        if n % TURNS_PER_SESSION == 0:
            session_id, next_sequence = "", 1
        turn = await chat(channel, _message(n % TURNS_PER_SESSION), session_id, timeout=30)
        assert turn.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
        assert turn.sequences == list(range(next_sequence, next_sequence + len(turn.events)))
        session_id, next_sequence = turn.session_id, turn.sequences[-1] + 1


@pytest.fixture
async def properties(aws: AwsClients, small_table: str) -> str:
    """The test's table, with two properties for the availability checks to look at."""
    for _ in range(2):
        await create_property(aws.dynamodb, small_table)
    return small_table


async def test_thousands_of_sequential_chat_turns_keep_a_gateway_process_within_bounded_memory(
    settings: Settings, properties: str
) -> None:
    # The emulator shares two cores with everything else; slowness is not what this test is about.
    replica = await start_replica(settings.replace(table_name=properties, aws_timeout_seconds=30.0))
    pid = replica.process.pid
    try:
        async with aio.insecure_channel(replica.target) as channel:
            await _soak(channel, WARM_UP_TURNS)
            baseline_rss, baseline_fds = rss_bytes(pid), open_fds(pid)
            started = time.perf_counter()
            done = WARM_UP_TURNS
            samples = [mib(baseline_rss)]
            step = max(SOAK_TURNS // 5, TURNS_PER_SESSION)
            while done < SOAK_TURNS:
                batch = min(step, SOAK_TURNS - done)
                await _soak(channel, batch, done)
                done += batch
                samples.append(mib(rss_bytes(pid)))
            seconds = time.perf_counter() - started
            final_rss, final_fds = rss_bytes(pid), open_fds(pid)
    finally:
        await replica.stop()
    measured = SOAK_TURNS - WARM_UP_TURNS
    growth = final_rss - baseline_rss
    print(
        f"\nsoak: {SOAK_TURNS} sequential chat turns ({measured} after a warm-up of {WARM_UP_TURNS}) in "
        f"{seconds:.1f} s ({seconds / max(measured, 1) * 1000:.1f} ms a turn); gateway RSS {' -> '.join(samples)} "
        f"({growth / 2**20:+.1f} MiB, {growth / max(measured, 1) / 1024:+.2f} KiB a turn); "
        f"open fds {baseline_fds} -> {final_fds}"
    )
    assert growth < RSS_GROWTH_LIMIT_BYTES
    assert final_fds - baseline_fds < FD_GROWTH_LIMIT
    assert [e for e in json_logs(replica) if e["level"] in ("ERROR", "CRITICAL")] == []


@pytest.fixture
async def local(devstack: DevStack, settings: Settings, properties: str) -> AsyncIterator[RunningGateway]:
    """A gateway in the test process (its tasks are visible here), on the test's table."""
    async with running_gateway(devstack, settings.replace(table_name=properties)) as running:
        yield running


def task_kinds() -> Counter[str]:
    """Open tasks by what they run. grpc keeps one task waiting for the next call of each method and replaces it
    with a new one when a call comes, so tasks are compared by kind and count, not by identity."""
    kinds: Counter[str] = Counter()
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        kinds[str(getattr(coro, "__qualname__", None) or type(coro).__name__)] += 1
    return kinds


async def test_chat_turns_leave_no_task_behind_in_the_gateway(local: RunningGateway) -> None:
    await _soak(local.channel, TURNS_PER_SESSION)
    before = task_kinds()
    await _soak(local.channel, TASK_CHECK_TURNS)
    # A finished call's last callbacks may still be on their way: wait (bounded) for the count to come back.
    with contextlib.suppress(TimeoutError):
        await eventually(lambda: not task_kinds() - before, timeout_seconds=5, what="the tasks back to their count")
    left = task_kinds() - before
    print(f"\n{TASK_CHECK_TURNS} turns in process: {before.total()} tasks before, {task_kinds().total()} after")
    assert left == Counter()
    assert local.app.chat.load.open == 0
    assert local.server.limiter.in_flight == 0

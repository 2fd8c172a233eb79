"""Durable chat turns (issue 17): benchmark 8 of `make bench`, or alone `python -m bench.durable [--trials N]
[--output PATH]`.

Two gateways ("replicas" A and B, each its own app, server and memory) in this process, over one table of the
embedded emulator (moto, in this process too), with the benchmarks' model (`bench/model.py`). Unlike the main
benchmarks, DynamoDB here is the emulator (a kept turn needs a table that stores), and the client shares the
process: the CPU figures include the client and the emulator, and the latencies include moto's. Measures:
(a) CPU per received event of a keep_running turn / a plain turn (fast model, same turns);
(b) table writes of a 500-delta keep_running reply paced over about 5 s, against duration / flush interval + 2;
(c) resume latency, ResumeChat sent to the first missed event, on the same replica and on the other, p50/p95;
(d) CancelTurn sent to the other replica until the model's stream is closed on the one running the turn, p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from grpc import aio

from bench.model import BenchModel
from bench.recorder import Recorder, TurnRecord
from bench.text import TurnSpec
from booking.v1 import chat_pb2, chat_pb2_grpc
from gateway.adapters.dynamodb.keys import PK, chat_partition
from gateway.app import gateway_server, open_app
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.services.chat.durable import KeepLimits
from gateway.testing import eventually


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@asynccontextmanager
async def _replica(stack: DevStack, recorder: Recorder) -> AsyncIterator[aio.Channel]:
    settings = stack.endpoints.configure(
        Settings.build(
            listen="127.0.0.1:0",
            no_web=True,
            grace_seconds=1.0,
            chat_anonymous_turns_per_minute=1_000_000,
            chat_anonymous_sessions_per_hour=1_000_000,
            chat_client_tokens_per_day=1_000_000_000_000,
            chat_gateway_tokens_per_day=1_000_000_000_000,
        )
    )
    async with (
        open_app(settings, stack.endpoints.target, trust_emulator_keys=True, model=BenchModel(recorder)) as app,
        gateway_server(app, settings) as server,
        aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield channel


async def _turn(channel: aio.Channel, message: str, *, keep: bool, stop_after: int | None = None) -> list[Any]:
    call = chat_pb2_grpc.ChatServiceStub(channel).Chat(
        chat_pb2.ChatRequest(message=message, keep_running=keep), timeout=120
    )
    events = []
    async for response in call:
        events.append(response.event)
        if stop_after is not None and len(events) >= stop_after:
            call.cancel()
            break
    return events


async def _cpu_per_event(channel: aio.Channel, trials: int) -> dict[str, Any]:
    message = TurnSpec(2000).message()
    out: dict[str, Any] = {}
    for keep in (False, True, False, True):
        cpu_before, events = time.process_time(), 0
        for _ in range(trials):
            events += len(await _turn(channel, message, keep=keep))
        per_event = (time.process_time() - cpu_before) / events * 1e6
        out.setdefault("kept" if keep else "plain", []).append(round(per_event, 1))
    out["ratio_kept_vs_plain"] = round(statistics.mean(out["kept"]) / statistics.mean(out["plain"]), 3)
    return out


async def _writes(stack: DevStack, channel: aio.Channel) -> dict[str, Any]:
    started = time.monotonic()
    events = await _turn(channel, TurnSpec(500, 100.0).message(), keep=True)
    duration = time.monotonic() - started
    session_id = events[0].session_started.session_id
    async with _dynamodb(stack) as dynamodb:
        answer = await dynamodb.query(
            TableName=stack.endpoints.table_name,
            KeyConditionExpression=f"{PK} = :pk AND begins_with(SK, :events)",
            ExpressionAttributeValues={":pk": {"S": chat_partition(session_id)}, ":events": {"S": "EVENTS#"}},
            ConsistentRead=True,
        )
    interval = KeepLimits().flush_interval_seconds
    return {
        "deltas_from_model": 500,
        "messages_sent": len(events),
        "duration_seconds": round(duration, 2),
        "table_writes": len(answer["Items"]),
        "goal_at_most": round(duration / interval + 2, 1),
    }


@asynccontextmanager
async def _dynamodb(stack: DevStack) -> AsyncIterator[Any]:
    from gateway.adapters.aws import open_aws_clients

    async with open_aws_clients(stack.endpoints.target) as clients:
        yield clients.dynamodb


async def _resume_latency(a: aio.Channel, b: aio.Channel, trials: int) -> dict[str, Any]:
    found: dict[str, list[float]] = {"same_replica": [], "other_replica": []}
    for n in range(trials):
        first = await _turn(a, TurnSpec(200, 100.0).message(), keep=True, stop_after=3)
        started = first[0].session_started
        # Let events pile up that the client missed, then ask for them.
        await asyncio.sleep(0.3)
        target, name = (a, "same_replica") if n % 2 == 0 else (b, "other_replica")
        sent = time.monotonic()
        call = chat_pb2_grpc.ChatServiceStub(target).ResumeChat(
            chat_pb2.ResumeChatRequest(
                session_id=started.session_id, after_sequence=first[-1].sequence, resume_token=started.resume_token
            ),
            timeout=60,
        )
        async for _ in call:
            found[name].append((time.monotonic() - sent) * 1000)
            break
        call.cancel()
        await chat_pb2_grpc.ChatServiceStub(a).CancelTurn(
            chat_pb2.CancelTurnRequest(session_id=started.session_id, resume_token=started.resume_token), timeout=10
        )
    return {
        name: {"p50_ms": round(_quantile(v, 0.5), 1), "p95_ms": round(_quantile(v, 0.95), 1), "trials": len(v)}
        for name, v in found.items()
    }


async def _cancel_latency(a: aio.Channel, b: aio.Channel, recorder: Recorder, trials: int) -> dict[str, Any]:
    delays: list[float] = []
    for n in range(trials):
        tag = f"cancel{n}"
        first = await _turn(a, TurnSpec(2000, 100.0, tag).message(), keep=True, stop_after=2)
        started = first[0].session_started
        sent = time.monotonic()
        await chat_pb2_grpc.ChatServiceStub(b).CancelTurn(
            chat_pb2.CancelTurnRequest(session_id=started.session_id, resume_token=started.resume_token), timeout=10
        )
        record = next(r for r in recorder.records if r.tag == tag)
        closed_at = await eventually(
            partial(_closed_at, record),
            timeout_seconds=10,
            interval_seconds=0.002,
            what="the model closed",
        )
        delays.append((closed_at - sent) * 1000)
    return {
        "p50_ms": round(_quantile(delays, 0.5), 1),
        "p99_ms": round(_quantile(delays, 0.99), 1),
        "max_ms": round(max(delays), 1),
        "trials": trials,
    }


def _closed_at(record: TurnRecord) -> float | None:
    return record.model_closed_at


async def run(trials: int) -> dict[str, Any]:
    recorder = Recorder()
    async with (
        DevStack.running(table_name=f"bench-durable-{uuid.uuid4().hex[:8]}", demo_data=False) as stack,
        _replica(stack, recorder) as a,
        _replica(stack, recorder) as b,
    ):
        return {
            "cpu_us_per_event": await _cpu_per_event(a, trials),
            "writes_500_delta_reply": await _writes(stack, a),
            "resume_latency": await _resume_latency(a, b, 2 * trials),
            "cancel_other_replica_to_model_closed": await _cancel_latency(a, b, recorder, trials),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    results = asyncio.run(run(args.trials))
    text = json.dumps(results, indent=2)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()

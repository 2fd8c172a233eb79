"""Chat load generators, each run in its own process; bounded in count and time; one JSON object on stdout.

    python -m bench.chat_load throughput grpc|connect|sse TARGET SECONDS TOKENS
    python -m bench.chat_load streams TARGET COUNT SPREAD RATE TOKENS
    python -m bench.chat_load cancel TARGET TRIALS RATE
    python -m bench.chat_load overload TARGET HOLD SPREAD RATE SECONDS EXTRA_PER_SECOND

- throughput: one stream at a time, turns of TOKENS fast tokens back to back for SECONDS (at least one turn):
  characters and messages delivered (grpc: the gRPC face; connect: the web face's Connect protocol, server
  streaming over HTTP/1.1; sse: the SSE endpoint).
- streams: COUNT streams of TOKENS tokens paced at RATE a second, starts spread evenly over SPREAD seconds:
  time to the first event and to the first text, each token's delay from its due time (stamped in the text),
  failed streams (a status other than OK, or tokens missing), and the most streams that were streaming at once
  (from their first event to their end): slow starts spread the streams out in time, so that fewer overlap.
- cancel: TRIALS turns one after another, each cancelled at a random moment mid-turn (after its first text):
  the CLOCK_MONOTONIC time of each cancel, which the orchestrator compares with the server's report.
- overload: HOLD paced streams held open, then for SECONDS, EXTRA_PER_SECOND new calls (each should be
  refused with RESOURCE_EXHAUSTED) and a health check every 20 ms; health latency before and during.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import grpc
from grpc import aio
from grpc_health.v1 import health_pb2

from bench.harness import summary_ms
from bench.text import TurnSpec, stamp_latencies_ms
from booking.v1 import chat_pb2, chat_pb2_grpc
from gateway.testing import CONNECT_STREAM_HEADERS, END_STREAM, envelope, envelopes

STREAMS_PER_CHANNEL = 100
HEALTH_PROBE_INTERVAL_SECONDS = 0.02


def channels(target: str, count: int) -> list[aio.Channel]:
    """`count` channels that do not share a connection (distinct arguments, local subchannel pools)."""
    return [
        aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1), ("bench.channel", index)])
        for index in range(count)
    ]


async def throughput_grpc(target: str, seconds: float, tokens: int) -> dict[str, Any]:
    async with aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        await channel.channel_ready()
        chars = messages = turns = errors = 0
        started = time.monotonic()
        while turns == 0 or time.monotonic() - started < seconds:
            try:
                call = stub.Chat(chat_pb2.ChatRequest(message=TurnSpec(tokens).message()), timeout=120)
                async for response in call:
                    messages += 1
                    if response.event.WhichOneof("kind") == "text_delta":
                        chars += len(response.event.text_delta.text)
            except aio.AioRpcError:
                errors += 1
            turns += 1
        elapsed = time.monotonic() - started
    return {"chars": chars, "messages": messages, "turns": turns, "errors": errors, "seconds": elapsed}


CHAT_PATH = "/booking.v1.ChatService/Chat"


async def throughput_connect(target: str, seconds: float, tokens: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        chars = messages = turns = errors = 0
        started = time.monotonic()
        while turns == 0 or time.monotonic() - started < seconds:
            request = envelope(chat_pb2.ChatRequest(message=TurnSpec(tokens).message()).SerializeToString())
            ended_ok = False
            url = f"http://{target}{CHAT_PATH}"
            async with session.post(url, data=request, headers=CONNECT_STREAM_HEADERS) as response:
                async for flags, payload in envelopes(response.content):
                    if flags & END_STREAM:
                        # The end-of-stream message is JSON: {} or {"error": ...}.
                        ended_ok = "error" not in json.loads(payload or b"{}")
                        continue
                    messages += 1
                    event = chat_pb2.ChatResponse.FromString(payload).event
                    if event.WhichOneof("kind") == "text_delta":
                        chars += len(event.text_delta.text)
            errors += 0 if ended_ok else 1
            turns += 1
        elapsed = time.monotonic() - started
    return {"chars": chars, "messages": messages, "turns": turns, "errors": errors, "seconds": elapsed}


async def throughput_sse(target: str, seconds: float, tokens: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        chars = messages = turns = errors = 0
        started = time.monotonic()
        while turns == 0 or time.monotonic() - started < seconds:
            try:
                async with session.post(
                    f"http://{target}/chat", json={"message": TurnSpec(tokens).message()}
                ) as response:
                    response.raise_for_status()
                    async for line in response.content:
                        if line.startswith(b"data: "):
                            event = json.loads(line[6:])
                            messages += 1
                            if event["type"] == "text_delta":
                                chars += len(event["text"])
            except aiohttp.ClientError:
                errors += 1
            turns += 1
        elapsed = time.monotonic() - started
    return {"chars": chars, "messages": messages, "turns": turns, "errors": errors, "seconds": elapsed}


class StreamStats:
    """What the streams of one run saw."""

    def __init__(self) -> None:
        self.first_event_ms: list[float] = []
        self.first_text_ms: list[float] = []
        self.delay_ms: list[float] = []
        self.failures: Counter[str] = Counter()
        self.messages = 0
        self.tokens = 0
        self.streaming = 0
        self.peak_streaming = 0


async def _stream(
    stub: chat_pb2_grpc.ChatServiceAsyncStub, spec: TurnSpec, start_in: float, stats: StreamStats
) -> None:
    await asyncio.sleep(start_in)
    started = time.monotonic()
    got_first = got_text = completed = False
    tokens = 0
    try:
        call = stub.Chat(chat_pb2.ChatRequest(message=spec.message()), timeout=spec.tokens / spec.rate + 60)
        async for response in call:
            now = time.monotonic()
            stats.messages += 1
            if not got_first:
                got_first = True
                stats.first_event_ms.append((now - started) * 1000)
                stats.streaming += 1
                stats.peak_streaming = max(stats.peak_streaming, stats.streaming)
            kind = response.event.WhichOneof("kind")
            if kind == "text_delta":
                if not got_text:
                    got_text = True
                    stats.first_text_ms.append((now - started) * 1000)
                delays = stamp_latencies_ms(response.event.text_delta.text, now)
                stats.delay_ms.extend(delays)
                tokens += len(delays)
            elif kind == "turn_complete":
                completed = True
    except aio.AioRpcError as exc:
        stats.failures[exc.code().name] += 1
        return
    finally:
        stats.tokens += tokens
        if got_first:
            stats.streaming -= 1
    if not completed or tokens != spec.tokens:
        stats.failures["INCOMPLETE"] += 1


async def streams(target: str, count: int, spread: float, rate: float, tokens: int) -> dict[str, Any]:
    pool = channels(target, max(1, -(-count // STREAMS_PER_CHANNEL)))
    try:
        for channel in pool:
            await channel.channel_ready()
        stubs = [chat_pb2_grpc.ChatServiceStub(channel) for channel in pool]
        stats = StreamStats()
        spec = TurnSpec(tokens, rate)
        started = time.monotonic()
        await asyncio.gather(*(_stream(stubs[i % len(stubs)], spec, spread * i / count, stats) for i in range(count)))
        elapsed = time.monotonic() - started
    finally:
        for channel in pool:
            await channel.close()
    return {
        "streams": count,
        "channels": len(pool),
        "failed_streams": sum(stats.failures.values()),
        "failures": dict(stats.failures),
        "tokens_expected": count * tokens,
        "tokens_received": stats.tokens,
        "messages": stats.messages,
        "first_event_ms": summary_ms(stats.first_event_ms),
        "first_text_ms": summary_ms(stats.first_text_ms),
        "delta_delay_ms": summary_ms(stats.delay_ms),
        "peak_streaming": stats.peak_streaming,
        "seconds": round(elapsed, 2),
    }


async def cancel(target: str, trials: int, rate: float) -> dict[str, Any]:
    async with aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        cancels: dict[str, float] = {}
        unexpected = 0
        for trial in range(trials):
            tag = f"trial-{trial}"
            call = stub.Chat(chat_pb2.ChatRequest(message=TurnSpec(100_000, rate, tag).message()), timeout=60)
            try:
                async for response in call:
                    if response.event.WhichOneof("kind") == "text_delta":
                        break
            except aio.AioRpcError:
                unexpected += 1
                continue
            # Mid-turn: somewhere within the next token or two.
            await asyncio.sleep(random.uniform(0, 2 / rate))
            cancels[tag] = time.monotonic()
            call.cancel()
            # Let the server finish with this turn before the next one starts, so trials do not overlap.
            await asyncio.sleep(0.03)
    return {"cancel_at": cancels, "errors": unexpected}


async def _timed(probe: Callable[[], Any]) -> tuple[float, str]:
    started = time.monotonic()
    try:
        await probe()
        code = "OK"
    except aio.AioRpcError as exc:
        code = exc.code().name
    return (time.monotonic() - started) * 1000, code


async def overload(
    target: str, hold: int, spread: float, rate: float, seconds: float, extra_per_second: float
) -> dict[str, Any]:
    pool = channels(target, max(1, -(-hold // STREAMS_PER_CHANNEL)) + 1)
    probe_channel = pool.pop()
    try:
        for channel in (*pool, probe_channel):
            await channel.channel_ready()
        health: aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse] = (
            probe_channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
        )

        async def check() -> None:
            await health(health_pb2.HealthCheckRequest(), timeout=5)

        idle = [(await _timed(check))[0] for _ in range(50)]
        stubs = [chat_pb2_grpc.ChatServiceStub(channel) for channel in pool]
        spec = TurnSpec(int(rate * (spread + seconds + 30)), rate)
        opened: list[asyncio.Event] = [asyncio.Event() for _ in range(hold)]
        held_failures: Counter[str] = Counter()

        async def hold_one(index: int) -> None:
            await asyncio.sleep(spread * index / hold)
            call = stubs[index % len(stubs)].Chat(chat_pb2.ChatRequest(message=spec.message()), timeout=120)
            try:
                async for _ in call:
                    opened[index].set()
            except aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.CANCELLED:
                    held_failures[exc.code().name] += 1
            finally:
                opened[index].set()

        holders = [asyncio.create_task(hold_one(i)) for i in range(hold)]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in opened)), spread + 30)
        extra_stub = chat_pb2_grpc.ChatServiceStub(probe_channel)

        async def extra() -> None:
            call = extra_stub.Chat(chat_pb2.ChatRequest(message=TurnSpec(5, rate).message()), timeout=10)
            async for _ in call:
                pass

        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        extras: list[asyncio.Task[tuple[float, str]]] = []
        probes: list[tuple[float, str]] = []

        async def fire_extras() -> None:
            while loop.time() < end:
                extras.append(asyncio.create_task(_timed(extra)))
                await asyncio.sleep(1 / extra_per_second)

        async def probe_health() -> None:
            while loop.time() < end:
                probes.append(await _timed(check))
                await asyncio.sleep(HEALTH_PROBE_INTERVAL_SECONDS)

        await asyncio.gather(fire_extras(), probe_health())
        extra_results = await asyncio.gather(*extras)
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
    finally:
        for channel in (*pool, probe_channel):
            await channel.close()
    outcomes = Counter(code for _, code in extra_results)
    return {
        "held_streams": hold,
        "held_failures": dict(held_failures),
        "extra_calls": len(extra_results),
        "extra_outcomes": dict(outcomes),
        "refusal_ms": summary_ms([ms for ms, code in extra_results if code == "RESOURCE_EXHAUSTED"]),
        "health_idle_ms": summary_ms(idle),
        "health_overloaded_ms": summary_ms([ms for ms, _ in probes]),
        "health_failures": sum(1 for _, code in probes if code != "OK"),
    }


def main() -> None:
    command, *args = sys.argv[1:]
    result: dict[str, Any]
    cpu_before = time.process_time()
    if command == "throughput":
        kind, target, seconds, tokens = args
        run = {"grpc": throughput_grpc, "connect": throughput_connect, "sse": throughput_sse}[kind]
        result = asyncio.run(run(target, float(seconds), int(tokens)))
    elif command == "streams":
        target, count, spread, rate, tokens = args
        result = asyncio.run(streams(target, int(count), float(spread), float(rate), int(tokens)))
    elif command == "cancel":
        target, trials, rate = args
        result = asyncio.run(cancel(target, int(trials), float(rate)))
    elif command == "overload":
        target, hold, spread, rate, seconds, extra_per_second = args
        result = asyncio.run(
            overload(target, int(hold), float(spread), float(rate), float(seconds), float(extra_per_second))
        )
    else:
        raise SystemExit(f"unknown command {command!r}")
    result["client_cpu_seconds"] = round(time.process_time() - cpu_before, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

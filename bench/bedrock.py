"""8. The Bedrock path: what the real model's stream costs the gateway per token, against the benchmark's model.

    python -m bench.bedrock [STREAMS] [TOKENS] [RATE]     one run, small by default (50 streams, 100 tokens, 50/s)
    python -m bench.bedrock gateway [STREAMS] [TOKENS] [RATE] [ROUNDS]   the same through the whole gateway (100, 250)
    python -m bench.bedrock serve PORTFILE                the paced fake endpoint alone (in its own process)

Benchmarks 2-5 run the gateway with the in-process benchmark model (`bench/model.py`). In production each token
instead arrives from Bedrock's `ConverseStream` as an AWS event-stream message (prelude, CRC32s, typed headers, a
JSON payload) that aiohttp reads and botocore decodes. This measures that path alone: the gateway's own
`BedrockAgent` on the real aioboto3 client (`open_bedrock_client`) against a paced wire-level fake of the endpoint
in its own process, which encodes every token as Bedrock does (`contentBlockDelta` events, stamped with their due
time like every benchmark token: `bench/text.py`). The same streams are then read from the benchmark model, and
the difference is what the real model adds to every token of benchmarks 3-5 (the rest of the gateway, the call
pipeline and the gRPC face, is the same for both).

CPU is this process's (`time.process_time`: all its threads); the fake's is read from /proc and left out.
Token delay: from each token's due time to when `run_round` handed it over.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web

from bench import harness
from bench.model import BenchModel
from bench.procfs import cpu_seconds
from bench.text import TurnSpec, stamp_latencies_ms
from gateway.adapters.aws import AwsTarget
from gateway.adapters.bedrock import BedrockAgent, open_bedrock_client
from gateway.domain import TextChunk, TurnFacts, UserText
from gateway.ports import AgentModel
from gateway.testing import SigningKey

MODEL_ID = "bench.model-v1"


def _header(name: str, value: str) -> bytes:
    encoded_name, encoded_value = name.encode(), value.encode()
    return (
        struct.pack("!B", len(encoded_name)) + encoded_name + struct.pack("!BH", 7, len(encoded_value)) + encoded_value
    )


def event_message(event_type: str, payload: dict[str, Any]) -> bytes:
    """One event-stream message as Bedrock sends it: prelude with its CRC32, string headers, JSON, CRC32."""
    headers = b"".join(
        _header(name, value)
        for name, value in (
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        )
    )
    body = json.dumps(payload).encode()
    prelude = struct.pack("!II", 12 + len(headers) + len(body) + 4, len(headers))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack("!I", binascii.crc32(message))


async def converse_stream(request: web.Request) -> web.StreamResponse:
    """The turn the last user message asks for (`TurnSpec`), paced, as a Converse event stream."""
    body = await request.json()
    spec = TurnSpec.parse(body["messages"][-1]["content"][-1].get("text", ""))
    response = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream"})
    await response.prepare(request)
    await response.write(event_message("messageStart", {"role": "assistant"}))
    written = 0
    async with aclosing(spec.tokens_iter()) as tokens:
        async for token in tokens:
            await response.write(event_message("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": token}}))
            written += 1
    await response.write(event_message("contentBlockStop", {"contentBlockIndex": 0}))
    await response.write(event_message("messageStop", {"stopReason": "end_turn"}))
    usage = {"inputTokens": 1, "outputTokens": written, "totalTokens": written + 1}
    await response.write(event_message("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
    await response.write_eof()
    return response


async def serve(port_file: Path) -> None:
    app = web.Application()
    app.router.add_post("/model/{model_id}/converse-stream", converse_stream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    sockets = getattr(site._server, "sockets", None)
    assert sockets
    port_file.write_text(str(sockets[0].getsockname()[1]))
    await asyncio.Event().wait()


@asynccontextmanager
async def fake_endpoint() -> AsyncIterator[tuple[int, str]]:
    """(pid, url) of the paced fake, in its own process."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.bedrock", "serve", str(port_file))
        try:
            for _ in range(400):
                if port_file.exists() and port_file.read_text():
                    break
                await asyncio.sleep(0.05)
            yield process.pid, f"http://127.0.0.1:{port_file.read_text()}"
        finally:
            process.terminate()
            await process.wait()


async def _round(model: AgentModel, spec: TurnSpec, delays: list[float]) -> int:
    facts = TurnFacts(authenticated=False, guest_id="", today=date(2026, 1, 1))
    tokens = 0
    async with aclosing(model.run_round([UserText(spec.message())], [], facts, {})) as outputs:
        async for output in outputs:
            if isinstance(output, TextChunk):
                delays.extend(stamp_latencies_ms(output.text, time.monotonic()))
                tokens += 1
    return tokens


async def _measure(model: AgentModel, streams: int, spec: TurnSpec, fake_pid: int | None) -> dict[str, Any]:
    delays: list[float] = []
    fake_before = cpu_seconds(fake_pid) if fake_pid else 0.0
    before = time.process_time()
    started = time.monotonic()
    counts = await asyncio.gather(*(_round(model, spec, delays) for _ in range(streams)))
    cpu = time.process_time() - before
    tokens = sum(counts)
    assert tokens == streams * spec.tokens, f"{tokens} of {streams * spec.tokens} tokens arrived"
    ordered = sorted(delays)
    fake = {"fake_cpu_us_per_token": round((cpu_seconds(fake_pid) - fake_before) / tokens * 1e6, 1)} if fake_pid else {}
    return {
        "tokens": tokens,
        "seconds": round(time.monotonic() - started, 2),
        "cpu_us_per_token": round(cpu / tokens * 1e6, 1),
        "token_delay_ms_p50": round(statistics.median(ordered), 1),
        "token_delay_ms_p99": round(ordered[int(len(ordered) * 0.99) - 1], 1),
        **fake,
    }


async def run(streams: int = 50, tokens: int = 100, rate: float = 50.0, rounds: int = 1) -> dict[str, Any]:
    """Both models in turn, `rounds` times: `streams` paced rounds at once of `tokens` tokens each."""
    spec = TurnSpec(tokens, rate)
    rows: dict[str, list[dict[str, Any]]] = {"scripted": [], "bedrock": []}
    async with fake_endpoint() as (pid, url):
        target = AwsTarget(region="us-east-1", endpoint_url=url, access_key_id="bench", secret_access_key="bench")  # noqa: S106 (the fake checks no signature)
        async with open_bedrock_client(target, timeout_seconds=30, max_connections=streams + 10) as client:
            bedrock = BedrockAgent(client, MODEL_ID)
            scripted = BenchModel()
            await _measure(bedrock, 2, TurnSpec(5, 1000.0), None)  # warm up: the client's first connection, imports
            for _ in range(rounds):
                rows["scripted"].append(await _measure(scripted, streams, spec, None))
                rows["bedrock"].append(await _measure(bedrock, streams, spec, pid))

    def median(name: str, key: str) -> float:
        return float(statistics.median(row[key] for row in rows[name]))

    return {
        "benchmark": "bedrock_path",
        "streams": streams,
        "tokens_per_stream": tokens,
        "rate_tokens_per_second": rate,
        "note": "the model's stream alone (BedrockAgent on aioboto3 vs the benchmark model), in one process; the "
        "fake endpoint in its own process (its CPU excluded); the gateway's other per-token work is the same for both",
        "rows": rows,
        "scripted_cpu_us_per_token": median("scripted", "cpu_us_per_token"),
        "bedrock_cpu_us_per_token": median("bedrock", "cpu_us_per_token"),
        "bedrock_extra_cpu_us_per_token": round(
            median("bedrock", "cpu_us_per_token") - median("scripted", "cpu_us_per_token"), 1
        ),
    }


async def through_gateway(streams: int = 100, tokens: int = 250, rate: float = 50.0, rounds: int = 1) -> dict[str, Any]:
    """Benchmark 3's paced streams through the whole gateway (gRPC face, DynamoDB fake), once with the benchmark
    model and once with the Bedrock model against the paced fake, in turn: server CPU per token of each."""
    rows: dict[str, list[dict[str, Any]]] = {"scripted": [], "bedrock": []}
    with tempfile.TemporaryDirectory(prefix="bench-bedrock-") as tmp:
        key = SigningKey.generate()
        jwks_file = Path(tmp) / "jwks.json"
        jwks_file.write_text(json.dumps({"keys": [key.jwk()]}))
        async with harness.server("bench.fakes", str(jwks_file)) as fake, fake_endpoint() as (bedrock_pid, url):
            common = ("gateway", "--dynamodb", f"http://{fake.target}", "--jwks", f"http://{fake.target}/jwks.json")
            limit = ("--max-concurrent-rpcs", str(streams + 100))
            async with (
                harness.server("bench.chat_servers", *common, *limit) as scripted,
                harness.server("bench.chat_servers", *common, *limit, "--bedrock", url) as bedrock,
            ):
                for _ in range(rounds):
                    for name, server in (("scripted", scripted), ("bedrock", bedrock)):
                        before, fake_before = server.cpu_seconds(), cpu_seconds(bedrock_pid)
                        result = await harness.client(
                            "bench.chat_load",
                            "streams",
                            server.target,
                            str(streams),
                            "1",
                            str(rate),
                            str(tokens),
                            limit_seconds=tokens / rate + 180,
                        )
                        used = server.cpu_seconds() - before
                        received = max(result["tokens_received"], 1)
                        rows[name].append(
                            {
                                "failed_streams": result["failed_streams"],
                                "tokens": result["tokens_received"],
                                "messages": result["messages"],
                                "peak_streaming": result["peak_streaming"],
                                "token_delay_ms_p99": result["delta_delay_ms"]["p99"],
                                "server_cpu_us_per_token": round(used / received * 1e6, 1),
                                "fake_cpu_us_per_token": round(
                                    (cpu_seconds(bedrock_pid) - fake_before) / received * 1e6, 1
                                ),
                            }
                        )
    return {
        "benchmark": "bedrock_gateway",
        "streams": streams,
        "tokens_per_stream": tokens,
        "rate_tokens_per_second": rate,
        "rows": rows,
        "failed_calls": sum(row["failed_streams"] for name in rows for row in rows[name]),
    }


def main(argv: Sequence[str]) -> None:
    if len(argv) == 2 and argv[0] == "serve":
        asyncio.run(serve(Path(argv[1])))
        return
    if argv and argv[0] == "gateway":
        values = [float(value) for value in argv[1:]]
        streams, tokens, rate, rounds = (values + [100, 250, 50.0, 1][len(values) :])[:4]
        print(json.dumps(asyncio.run(through_gateway(int(streams), int(tokens), rate, int(rounds))), indent=2))
        return
    numbers = [float(value) for value in argv]
    streams, tokens, rate, rounds = (numbers + [50, 100, 50.0, 1][len(numbers) :])[:4]
    print(json.dumps(asyncio.run(run(int(streams), int(tokens), rate, int(rounds))), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])

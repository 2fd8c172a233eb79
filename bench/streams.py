"""One chat stream, several ways, in one run: the grpc.aio face, a bare grpc.aio server (grpc's own floor), the
web face (Connect and gRPC-Web), and a plain SSE endpoint written for the comparison. Per-event server CPU and
events per second.

    python -m bench.streams serve KIND PORTFILE      KIND: grpc | bare | web | sse   (a server, in its own process)

Every server streams the same events (`ChatResponse` text deltas, sequence numbers increasing) as fast as the
connection takes them, from one event source, so what differs is the transport. The grpc and web servers are the
gateway's own server (`GatewayServer`, the call pipeline: request id, concurrency limit, auth policy: Chat is
OPTIONAL, called anonymously) over a handler table whose Chat handler is the event source; the SSE server is a
bare uvicorn endpoint that JSON-encodes each event, the way the seed's stream did. Server CPU is read from /proc
for the server process (user + system) around each stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc import aio
from starlette.types import Receive, Scope, Send

from booking.v1 import chat_pb2, chat_pb2_grpc
from gateway.calls import Call
from gateway.errors import NotImplementedYetError
from gateway.transport.auth import Authenticator
from gateway.transport.pipeline import ConcurrencyLimiter, Pipeline
from gateway.transport.server import GatewayServer
from gateway.transport.settings import TransportSettings
from gateway.transport.table import HandlerTable
from gateway.transport.web import WebServer

CHAT_METHOD = "/booking.v1.ChatService/Chat"
WORD = "word "
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def events(count: int) -> AsyncIterator[chat_pb2.ChatResponse]:
    """The event source every server streams from: `count` text deltas."""

    async def generate() -> AsyncIterator[chat_pb2.ChatResponse]:
        for sequence in range(count):
            yield chat_pb2.ChatResponse(
                event=chat_pb2.ChatEvent(sequence=sequence, text_delta=chat_pb2.TextDelta(text=WORD))
            )

    return generate()


class KeepsNoTurns:
    """ResumeChat and CancelTurn for benchmark chat handlers that keep no turns (the table needs every RPC)."""

    async def ResumeChat(
        self, request: chat_pb2.ResumeChatRequest, call: Call
    ) -> AsyncGenerator[chat_pb2.ResumeChatResponse]:
        """Not benchmarked: nothing is kept."""
        nothing: tuple[chat_pb2.ResumeChatResponse, ...] = ()
        for response in nothing:  # an async generator that never yields
            yield response
        raise NotImplementedYetError("the benchmark keeps no turns")

    async def CancelTurn(self, request: chat_pb2.CancelTurnRequest, call: Call) -> chat_pb2.CancelTurnResponse:
        """Not benchmarked: nothing is kept."""
        raise NotImplementedYetError("the benchmark keeps no turns")


class FirehoseChat(KeepsNoTurns):
    """A Chat handler with the agent replaced by the event source: "N" as the message asks for N events."""

    async def Chat(self, request: chat_pb2.ChatRequest, call: Call) -> AsyncGenerator[chat_pb2.ChatResponse]:
        async for event in events(int(request.message)):
            yield event


@asynccontextmanager
async def firehose_gateway(*, web: bool) -> AsyncIterator[GatewayServer]:
    """The chat contract answered by `FirehoseChat`, served as the gateway serves its table (both faces)."""
    table = HandlerTable.build([chat_pb2.DESCRIPTOR], {"booking.v1.ChatService": FirehoseChat()})
    pipeline = Pipeline(Authenticator(None), ConcurrencyLimiter(10_000))
    settings = TransportSettings(listen="127.0.0.1:0", web_listen="127.0.0.1:0", no_web=not web, grace_seconds=1.0)
    async with GatewayServer(table, pipeline, settings) as server:
        yield server


async def serve_grpc(port_file: Path) -> None:
    async with firehose_gateway(web=False) as server:
        port_file.write_text(str(server.port))
        await asyncio.Event().wait()


async def serve_bare(port_file: Path) -> None:
    """The same events from a bare grpc.aio server: no table, no pipeline, the generator handed to grpc as it is."""

    async def chat(request: chat_pb2.ChatRequest, context: Any) -> AsyncIterator[chat_pb2.ChatResponse]:
        async for event in events(int(request.message)):
            yield event

    server = aio.server()
    handler = grpc.unary_stream_rpc_method_handler(
        chat,
        request_deserializer=chat_pb2.ChatRequest.FromString,
        response_serializer=chat_pb2.ChatResponse.SerializeToString,
    )
    server.add_registered_method_handlers("booking.v1.ChatService", {"Chat": handler})
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    port_file.write_text(str(port))
    await asyncio.Event().wait()


async def serve_web(port_file: Path) -> None:
    async with firehose_gateway(web=True) as server:
        port_file.write_text(str(server.web_port))
        await asyncio.Event().wait()


async def sse_app(scope: Scope, receive: Receive, send: Send) -> None:
    """GET /sse?count=N: the same events as server-sent events with JSON payloads."""
    if scope["type"] != "http":
        return
    count = int(scope["query_string"].decode().partition("=")[2] or "0")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    async for response in events(count):
        event = response.event
        payload = {"sequence": event.sequence, "textDelta": {"text": event.text_delta.text}}
        await send(
            {"type": "http.response.body", "body": f"data: {json.dumps(payload)}\n\n".encode(), "more_body": True}
        )
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def serve_sse(port_file: Path) -> None:
    web = WebServer(sse_app, host="127.0.0.1", port=0)
    await web.start()
    port_file.write_text(str(web.port))
    await asyncio.Event().wait()


def serve_main(kind: str, port_file: str) -> None:
    import logging

    logging.disable(logging.CRITICAL)  # measure the transport, not the access log
    servers = {"grpc": serve_grpc, "bare": serve_bare, "web": serve_web, "sse": serve_sse}
    # Every server runs on uvloop's event loop, as `gateway serve` does by default; "grpc:asyncio" (any kind with
    # ":asyncio") runs it on asyncio's own loop instead.
    kind, _, loop = kind.partition(":")
    if loop == "asyncio":
        asyncio.run(servers[kind](Path(port_file)))
    else:
        import uvloop

        uvloop.run(servers[kind](Path(port_file)))


# ---- the measuring side -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@asynccontextmanager
async def server_process(kind: str) -> AsyncIterator[tuple[int, int]]:
    """(pid, port) of a benchmark server of `kind`, stopped on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.streams", "serve", kind, str(port_file)
        )
        try:
            for _ in range(400):
                if port_file.exists() and port_file.read_text():
                    break
                await asyncio.sleep(0.05)
            yield process.pid, int(port_file.read_text())
        finally:
            process.terminate()
            await process.wait()


async def stream_grpc(port: int, count: int) -> int:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        received = 0
        async for _ in stub.Chat(chat_pb2.ChatRequest(message=str(count)), timeout=120):
            received += 1
        return received


def _envelopes(buffer: bytearray) -> int:
    """Count and drop the complete 5-byte-prefixed messages at the front of `buffer` (Connect and gRPC-Web)."""
    messages = 0
    while len(buffer) >= 5:
        flags, length = struct.unpack(">BI", buffer[:5])
        if len(buffer) < 5 + length:
            break
        del buffer[: 5 + length]
        if not flags & 0x80 and not flags & 0x02:  # data frames only, not the end-of-stream / trailers frame
            messages += 1
    return messages


async def stream_web(port: int, count: int, protocol: str) -> int:
    body = chat_pb2.ChatRequest(message=str(count)).SerializeToString()
    envelope = struct.pack(">BI", 0, len(body)) + body
    content_type = "application/connect+proto" if protocol == "connect" else "application/grpc-web+proto"
    headers = {"content-type": content_type}
    if protocol == "connect":
        headers["connect-protocol-version"] = "1"
    else:
        headers["x-grpc-web"] = "1"
    received = 0
    buffer = bytearray()
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}{CHAT_METHOD}", data=envelope, headers=headers) as response,
    ):
        async for chunk in response.content.iter_any():
            buffer.extend(chunk)
            received += _envelopes(buffer)
    return received


async def stream_sse(port: int, count: int) -> int:
    received = 0
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/sse?count={count}") as response:
        tail = b""
        async for chunk in response.content.iter_any():
            data = tail + chunk
            received += data.count(b"\n\n")
            tail = data[data.rfind(b"\n\n") + 2 :] if b"\n\n" in data else data
    return received


async def measure(kind: str, stream: Any, pid: int, port: int, count: int, seconds: float) -> dict[str, float]:
    """Stream `count` events again and again for about `seconds`; per-event server CPU and events/s."""
    await stream(port, min(count, 1000))  # warm up: imports, first connection
    streamed = 0
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        received = await stream(port, count)
        assert received == count, f"{kind}: {received} of {count} events arrived"
        streamed += received
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    return {
        "events": streamed,
        "events_per_second": round(streamed / elapsed, 1),
        "server_cpu_us_per_event": round(cpu / streamed * 1e6, 2),
    }


async def run(seconds: float, count: int = 20_000) -> dict[str, Any]:
    """Every variant in one run, each against its own server process."""
    results: dict[str, Any] = {
        "benchmark": "chat_stream",
        "note": f"one chat stream at a time of {count} text deltas ({len(WORD)} chars each); server in its own "
        "process; grpc and web run the real call pipeline and servicer object; SSE is a bare uvicorn endpoint "
        "with json.dumps per event; client CPU excluded",
        "events_per_stream": count,
    }
    async with server_process("grpc") as (pid, port):
        results["grpc"] = await measure("grpc", stream_grpc, pid, port, count, seconds)
    # grpc.aio's own floor: the same events from a bare server (no table, no pipeline).
    async with server_process("bare") as (pid, port):
        results["bare"] = await measure("bare", stream_grpc, pid, port, count, seconds)
    async with server_process("web") as (pid, port):

        async def connect(port: int, count: int) -> int:
            return await stream_web(port, count, "connect")

        async def grpc_web(port: int, count: int) -> int:
            return await stream_web(port, count, "grpc-web")

        results["web_connect"] = await measure("web_connect", connect, pid, port, count, seconds)
        results["web_grpc_web"] = await measure("web_grpc_web", grpc_web, pid, port, count, seconds)
    async with server_process("sse") as (pid, port):
        results["sse"] = await measure("sse", stream_sse, pid, port, count, seconds)
    base = results["grpc"]["server_cpu_us_per_event"]
    for name in ("bare", "web_connect", "web_grpc_web", "sse"):
        results[f"cpu_ratio_{name}_vs_grpc"] = round(results[name]["server_cpu_us_per_event"] / base, 3)
        results[f"rate_ratio_{name}_vs_grpc"] = round(
            results[name]["events_per_second"] / results["grpc"]["events_per_second"], 3
        )
    return results


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve_main(sys.argv[2], sys.argv[3])
    else:
        print(json.dumps(asyncio.run(run(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)), indent=2))

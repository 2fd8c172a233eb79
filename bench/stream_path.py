"""The gateway's own CPU per streamed chat event, in process: what the gRPC face's streaming path costs in Python.

    python -m bench.stream_path [EVENTS] [ROUNDS]

Section 7 (`bench/streams.py`) measures a whole server process, grpc core included, whose per-message cost (one
`sendmsg`, two wake-ups of the event loop by grpc's poller thread: eight system calls a message) dwarfs and
drowns the gateway's own share on a busy machine. This measures that share alone, without a socket: a stream of
`EVENTS` chat events (`services.chat.events.ChatEvent` text deltas) is pulled through

- `handler`: the Chat handler's conversion alone (`convert.chat_response` per event, as `ChatHandlers.Chat`
  yields it), the floor every face pays;
- `grpc_face`: the same handler behind the gRPC face's behavior (`GrpcFace.handler` of the table's Chat method:
  the call scope, the pipeline, the face's error rendering), driven as grpc.aio drives it (`async for`), with a
  stand-in for grpc's servicer context;
- `serialize`: the handler plus `SerializeToString` of each message, which grpc.aio calls per message.

Each row is timed by `time.process_time` over `ROUNDS` rounds, alternating rows within a round; the medians
are reported in µs of CPU per event.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from bench.streams import KeepsNoTurns
from booking.v1 import chat_pb2
from gateway.calls import Call
from gateway.services.chat.events import ChatEvent, TextDelta
from gateway.transport import convert
from gateway.transport.auth import Authenticator
from gateway.transport.grpc_face import GrpcFace
from gateway.transport.pipeline import ConcurrencyLimiter, Pipeline
from gateway.transport.table import HandlerTable

WORD = "word "


class _Source(KeepsNoTurns):
    """The chat service's events, ready at once: what the handler converts."""

    async def Chat(self, request: chat_pb2.ChatRequest, call: Call) -> AsyncGenerator[chat_pb2.ChatResponse]:
        for sequence in range(int(request.message)):
            yield convert.chat_response(ChatEvent(sequence, TextDelta(WORD)))


class _Context:
    """What the gRPC face reads of grpc.aio's servicer context."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("user-agent", "bench"),)

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def time_remaining(self) -> float | None:
        return None

    def cancelled(self) -> bool:
        return False

    async def abort(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the benchmark's stream failed")


async def _drain(responses: AsyncIterator[Any], serialize: Callable[[Any], bytes] | None = None) -> int:
    count = 0
    async for response in responses:
        if serialize is not None:
            serialize(response)
        count += 1
    return count


async def run(events: int, rounds: int) -> dict[str, Any]:
    source = _Source()
    table = HandlerTable.build([chat_pb2.DESCRIPTOR], {"booking.v1.ChatService": source})
    face = GrpcFace(Pipeline(Authenticator(None), ConcurrencyLimiter(10)), table)
    method = next(m for m in table if m.name == "Chat")
    behavior = face.handler(method).unary_stream
    assert behavior is not None
    request = chat_pb2.ChatRequest(message=str(events))
    serialize = chat_pb2.ChatResponse.SerializeToString

    async def handler_only() -> int:
        return await _drain(source.Chat(request, None))  # type: ignore[arg-type]  # the handler ignores its call

    async def serialized() -> int:
        return await _drain(source.Chat(request, None), serialize)  # type: ignore[arg-type]

    async def grpc_face() -> int:
        # grpc's stubs type a stream behavior as returning a sync iterator; the face's is an async generator.
        return await _drain(behavior(request, _Context()))  # type: ignore[arg-type]

    rows: dict[str, Callable[[], Any]] = {"handler": handler_only, "serialize": serialized, "grpc_face": grpc_face}
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for row in rows.values():  # warm up
        await row()
    for index in range(rounds):
        order = list(rows.items()) if index % 2 == 0 else list(reversed(rows.items()))
        for name, row in order:
            started = time.process_time()
            count = await row()
            samples[name].append((time.process_time() - started) / count * 1e6)
            assert count == events
    medians = {name: round(statistics.median(values), 2) for name, values in samples.items()}
    return {
        "benchmark": "stream_path",
        "events": events,
        "rounds": rounds,
        "cpu_us_per_event": medians,
        "face_over_handler_us": round(medians["grpc_face"] - medians["handler"], 2),
        "rounds_us": {name: [round(value, 2) for value in values] for name, values in samples.items()},
    }


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    print(json.dumps(asyncio.run(run(count, repeat)), indent=2))

"""A wire-level fake of Amazon Bedrock's `ConverseStream` on a loopback port.

It speaks what the real endpoint speaks: `POST /model/{modelId}/converse-stream` answered with an
`application/vnd.amazon.eventstream` body of binary event-stream messages (prelude, CRC32s, typed headers, JSON
payloads), or with an HTTP error carrying `x-amzn-ErrorType`. botocore's own parser (`botocore.eventstream`)
decodes it on the gateway's side, so the gateway's unchanged aioboto3 calls are what is tested.

Each request takes the next scripted `Reply`; the decoded request bodies are kept for assertions.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

EVENT_STREAM = "application/vnd.amazon.eventstream"


def _header(name: str, value: str) -> bytes:
    encoded_name = name.encode()
    encoded_value = value.encode()
    # name length (1 byte), name, type 7 (string), value length (2 bytes), value
    return (
        struct.pack("!B", len(encoded_name)) + encoded_name + struct.pack("!BH", 7, len(encoded_value)) + encoded_value
    )


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32), headers, payload, CRC32."""
    header_bytes = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack("!II", total, len(header_bytes))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + header_bytes + payload
    return body + struct.pack("!I", binascii.crc32(body) & 0xFFFFFFFF)


def encode_event(event_type: str, payload: dict[str, Any]) -> bytes:
    """A Converse stream event such as `contentBlockDelta`."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, json.dumps(payload).encode())


def encode_exception(exception_type: str, message: str) -> bytes:
    """An error inside the stream, such as `throttlingException`."""
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_message(headers, json.dumps({"message": message}).encode())


@dataclass
class Reply:
    """What the endpoint answers to one request.

    `frames` are sent in order; with `hold_after` set, the stream stays open after that many frames until the
    client goes away (recorded in `FakeBedrock.closed_by_client`). `status` other than 200 sends an HTTP error.
    """

    frames: list[bytes] = field(default_factory=list)
    status: int = 200
    error_type: str = ""
    hold_after: int | None = None


def text_reply(*texts: str, stop: str = "end_turn", usage: tuple[int, int] = (11, 7)) -> Reply:
    """The model writes `texts` as deltas of one text block, then stops."""
    frames = [encode_event("messageStart", {"role": "assistant"})]
    frames += [encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}}) for t in texts]
    frames.append(encode_event("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(encode_event("messageStop", {"stopReason": stop}))
    frames.append(_metadata(usage))
    return Reply(frames)


def tool_reply(
    text: str, tool_use_id: str, name: str, input_parts: list[str], usage: tuple[int, int] = (20, 9)
) -> Reply:
    """The model writes `text`, then asks for tool `name` with JSON input streamed in `input_parts`."""
    frames = [
        encode_event("messageStart", {"role": "assistant"}),
        encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}}),
        encode_event("contentBlockStop", {"contentBlockIndex": 0}),
        encode_event(
            "contentBlockStart",
            {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": tool_use_id, "name": name}}},
        ),
    ]
    frames += [
        encode_event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": part}}})
        for part in input_parts
    ]
    frames.append(encode_event("contentBlockStop", {"contentBlockIndex": 1}))
    frames.append(encode_event("messageStop", {"stopReason": "tool_use"}))
    frames.append(_metadata(usage))
    return Reply(frames)


def tools_reply(text: str, *calls: tuple[str, str, dict[str, Any]], usage: tuple[int, int] = (20, 9)) -> Reply:
    """The model writes `text`, then asks for several tools in one reply: (tool use id, name, input) each."""
    frames = [
        encode_event("messageStart", {"role": "assistant"}),
        encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}}),
        encode_event("contentBlockStop", {"contentBlockIndex": 0}),
    ]
    for index, (tool_use_id, name, arguments) in enumerate(calls, start=1):
        frames += [
            encode_event(
                "contentBlockStart",
                {"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": tool_use_id, "name": name}}},
            ),
            encode_event(
                "contentBlockDelta",
                {"contentBlockIndex": index, "delta": {"toolUse": {"input": json.dumps(arguments)}}},
            ),
            encode_event("contentBlockStop", {"contentBlockIndex": index}),
        ]
    frames.append(encode_event("messageStop", {"stopReason": "tool_use"}))
    frames.append(_metadata(usage))
    return Reply(frames)


def _metadata(usage: tuple[int, int]) -> bytes:
    return encode_event(
        "metadata",
        {
            "usage": {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": sum(usage)},
            "metrics": {"latencyMs": 5},
        },
    )


def error_reply(status: int = 503, error_type: str = "ServiceUnavailableException") -> Reply:
    """An HTTP error before any stream, as Bedrock sends when it is unavailable or throttling."""
    return Reply(status=status, error_type=error_type)


class FakeBedrock:
    """The fake endpoint. `replies` are consumed one per request; `requests` keeps each decoded body."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.closed_by_client = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Replace what the next requests are answered with."""
        self.replies = deque(replies)
        self.requests.clear()
        self.paths.clear()
        self.closed_by_client = asyncio.Event()

    async def _converse_stream(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        self.requests.append(json.loads(await request.read()))
        if not self.replies:
            return web.json_response({"message": "no reply scripted"}, status=500)
        reply = self.replies.popleft()
        if reply.status != 200:
            return web.json_response(
                {"message": "scripted failure"}, status=reply.status, headers={"x-amzn-ErrorType": reply.error_type}
            )
        response = web.StreamResponse(status=200, headers={"Content-Type": EVENT_STREAM})
        await response.prepare(request)
        for index, frame in enumerate(reply.frames):
            if reply.hold_after is not None and index == reply.hold_after:
                await self._hold(request)
                return response
            await response.write(frame)
        await response.write_eof()
        return response

    async def _hold(self, request: web.Request) -> None:
        """Keep the stream open, like a model still thinking, until the client closes the connection.

        aiohttp cancels the handler when its connection is lost (`handler_cancellation=True` below).
        """
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.closed_by_client.set()
            raise

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/model/{model_id}/converse-stream", self._converse_stream)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None)
        assert sockets
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

"""A raw HTTP/2 gRPC call: sends what grpc's own clients refuse to (header bytes that are not UTF-8, broken frames)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


def frame(message: bytes, *, compressed: int = 0) -> bytes:
    """One gRPC length-prefixed message (flag byte, big-endian length, bytes)."""
    return struct.pack(">BI", compressed, len(message)) + message


@dataclass
class RawAnswer:
    """What came back on the stream: response headers, trailers, the data, or the reset/GOAWAY code."""

    headers: dict[bytes, bytes] = field(default_factory=dict)
    trailers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytes = b""
    reset_code: int | None = None

    @property
    def grpc_status(self) -> int | None:
        """The grpc-status of the answer (a trailers-only answer carries it in its headers)."""
        value = self.trailers.get(b"grpc-status", self.headers.get(b"grpc-status"))
        return int(value) if value is not None else None

    def header(self, name: bytes) -> bytes | None:
        """A trailer, or else a header, by name."""
        return self.trailers.get(name, self.headers.get(name))


async def raw_grpc_call(
    port: int,
    path: str,
    body: bytes,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    timeout: float = 10,
) -> RawAnswer:
    """POST `body` (already framed) to `path` over a fresh HTTP/2 connection to 127.0.0.1:`port`."""
    config = h2.config.H2Configuration(
        client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False
    )
    connection = h2.connection.H2Connection(config=config)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = RawAnswer()
    try:
        connection.initiate_connection()
        stream_id = connection.get_next_available_stream_id()
        request_headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", f"127.0.0.1:{port}".encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *headers,
        ]
        connection.send_headers(stream_id, request_headers)
        connection.send_data(stream_id, body, end_stream=True)
        writer.write(connection.data_to_send())
        await writer.drain()
        async with asyncio.timeout(timeout):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return answer
                for event in connection.receive_data(chunk):
                    if isinstance(event, h2.events.ResponseReceived):
                        answer.headers = {bytes(k): bytes(v) for k, v in event.headers}
                    elif isinstance(event, h2.events.TrailersReceived):
                        answer.trailers = {bytes(k): bytes(v) for k, v in event.headers}
                    elif isinstance(event, h2.events.DataReceived):
                        answer.data += event.data
                        connection.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                        answer.reset_code = int(event.error_code or 0)
                        return answer
                    elif isinstance(event, h2.events.StreamEnded):
                        return answer
                writer.write(connection.data_to_send())
                await writer.drain()
    finally:
        writer.close()

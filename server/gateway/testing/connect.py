"""The Connect protocol's streaming envelopes by hand, for calling the web face over plain HTTP (aiohttp).

An envelope is one flags byte, a 4-byte big-endian length and the message. The last envelope of a response
stream has the end-of-stream flag and carries JSON: `{}`, or `{"error": {...}}`.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import aiohttp

__all__ = ["CONNECT_STREAM_HEADERS", "END_STREAM", "envelope", "envelopes"]

END_STREAM = 0x02
CONNECT_STREAM_HEADERS = {"content-type": "application/connect+proto", "connect-protocol-version": "1"}


def envelope(message: bytes, flags: int = 0) -> bytes:
    """`message` in one envelope."""
    return struct.pack(">BI", flags, len(message)) + message


async def envelopes(content: aiohttp.StreamReader) -> AsyncIterator[tuple[int, bytes]]:
    """Each envelope of a response body as (flags, message), as soon as it has arrived whole."""
    buffer = bytearray()
    async for chunk in content.iter_any():
        buffer.extend(chunk)
        while len(buffer) >= 5:
            flags, length = struct.unpack(">BI", buffer[:5])
            if len(buffer) < 5 + length:
                break
            message = bytes(buffer[5 : 5 + length])
            del buffer[: 5 + length]
            yield flags, message

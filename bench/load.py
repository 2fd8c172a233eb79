"""Unary load generator, run in its own process: calls bounded in count and time, JSON result on stdout.

    python -m bench.load TARGET METHOD CONCURRENCY SECONDS [--tokens FILE] [--channels N] [--request-hex HEX]

CONCURRENCY calls are kept in flight on each of N channels (default 1). The channels never share a connection
(distinct channel arguments, local subchannel pools), so a server with several SO_REUSEPORT workers sees N
connections to spread. With a token file (one token per line) each call sends the next token: a file with one
line measures the verify-once cache, a file with many lines measures first-sight verification (stops when the
tokens run out). The request is a `google.protobuf.BytesValue` of 60 bytes of "x" (the echo servers' request, 62
bytes encoded) unless --request-hex gives one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from grpc import aio

# BytesValue(value=b"x" * 60), encoded by hand: field 1, length 60.
PAYLOAD = b"\x0a\x3c" + b"x" * 60


def _identity(data: bytes) -> bytes:
    return data


def _metadata(tokens: list[str], index: int) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {tokens[index]}"),) if tokens else ()


async def run(
    target: str,
    method: str,
    concurrency: int,
    seconds: float,
    tokens: list[str],
    *,
    channel_count: int = 1,
    request: bytes = PAYLOAD,
) -> dict[str, float]:
    channels = [
        aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1), ("bench.channel", index)])
        for index in range(channel_count)
    ]
    try:
        calls: list[aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            channel.unary_unary(method, request_serializer=_identity, response_deserializer=_identity)
            for channel in channels
        ]
        for call in calls:
            await call(request, metadata=_metadata(tokens, 0), timeout=10)  # warm the connection
        done = errors = 0
        next_token = 1 if len(tokens) > 1 else 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def worker(call: aio.UnaryUnaryMultiCallable[bytes, bytes]) -> None:
            nonlocal done, errors, next_token
            while time.perf_counter() < deadline:
                if len(tokens) > 1:
                    if next_token >= len(tokens):
                        return
                    index = next_token
                    next_token += 1
                else:
                    index = 0
                try:
                    await call(request, metadata=_metadata(tokens, index), timeout=10)
                    done += 1
                except aio.AioRpcError:
                    errors += 1

        await asyncio.gather(*(worker(call) for call in calls for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        for channel in channels:
            await channel.close()
    return {"calls": done, "errors": errors, "seconds": elapsed, "calls_per_second": done / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target")
    parser.add_argument("method")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--tokens", type=Path)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--request-hex", default=None)
    args = parser.parse_args()
    tokens = args.tokens.read_text().split() if args.tokens else []
    request = bytes.fromhex(args.request_hex) if args.request_hex is not None else PAYLOAD
    cpu_before = time.process_time()
    result = asyncio.run(
        run(
            args.target,
            args.method,
            args.concurrency,
            args.seconds,
            tokens,
            channel_count=args.channels,
            request=request,
        )
    )
    result["client_cpu_seconds"] = round(time.process_time() - cpu_before, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Load generator, run in its own process: unary calls with bounded count and time, JSON result on stdout.

    python -m bench.load TARGET METHOD CONCURRENCY SECONDS [TOKENFILE]

With a token file (one token per line) each call sends the next token: a file with one line measures the
verify-once cache, a file with many lines measures first-sight verification (stops when tokens run out).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from grpc import aio

PAYLOAD = b"x" * 64


def _identity(data: bytes) -> bytes:
    return data


async def run(target: str, method: str, concurrency: int, seconds: float, tokens: list[str]) -> dict[str, float]:
    async with aio.insecure_channel(target) as channel:
        call: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            method, request_serializer=_identity, response_deserializer=_identity
        )
        await call(PAYLOAD, metadata=_metadata(tokens, 0), timeout=10)  # warm the connection
        done = errors = 0
        next_token = 1 if len(tokens) > 1 else 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def worker() -> None:
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
                    await call(PAYLOAD, metadata=_metadata(tokens, index), timeout=10)
                    done += 1
                except aio.AioRpcError:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"calls": done, "errors": errors, "seconds": elapsed, "calls_per_second": done / elapsed}


def _metadata(tokens: list[str], index: int) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {tokens[index]}"),) if tokens else ()


def main() -> None:
    target, method, concurrency, seconds, *rest = sys.argv[1:]
    tokens = Path(rest[0]).read_text().split() if rest else []
    result = asyncio.run(run(target, method, int(concurrency), float(seconds), tokens))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

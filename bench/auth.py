"""Authenticated unary RPC vs the same RPC PUBLIC vs a bare grpc.aio echo, in one run."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.servers import PUBLIC_METHOD, REQUIRED_METHOD
from tests.support.jwks import CLIENT_ID, ISSUER, SigningKey, access_claims, mint

CONCURRENCY = 32


@asynccontextmanager
async def jwks_server(key: SigningKey) -> AsyncIterator[str]:
    app = web.Application()

    async def serve(request: web.Request) -> web.Response:
        return web.json_response({"keys": [key.jwk()]})

    app.router.add_get("/jwks.json", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/jwks.json"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def server_process(kind: str, *args: str) -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.servers", kind, str(port_file), *args
        )
        try:
            for _ in range(300):
                if port_file.exists() and port_file.read_text():
                    break
                await asyncio.sleep(0.05)
            yield f"127.0.0.1:{port_file.read_text()}"
        finally:
            process.terminate()
            await process.wait()


async def load(target: str, method: str, seconds: float, token_file: Path | None = None) -> dict[str, float]:
    args = [target, method, str(CONCURRENCY), str(seconds)]
    if token_file is not None:
        args.append(str(token_file))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.load", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    result: dict[str, float] = json.loads(out)
    return result


async def run(seconds: float) -> dict[str, Any]:
    key = SigningKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one-token"
        one.write_text(mint(key, access_claims(iss=ISSUER, client_id=CLIENT_ID)))
        many = Path(tmp) / "many-tokens"
        minted_at = time.perf_counter()
        many.write_text("\n".join(mint(key) for _ in range(3000)))
        _ = time.perf_counter() - minted_at
        async with jwks_server(key) as jwks_url:
            async with server_process("bare") as bare:
                bare_result = await load(bare, REQUIRED_METHOD, seconds)
            async with server_process("gateway", jwks_url, ISSUER, CLIENT_ID) as gateway:
                public = await load(gateway, PUBLIC_METHOD, seconds)
                authenticated = await load(gateway, REQUIRED_METHOD, seconds, one)
                first_sight = await load(gateway, REQUIRED_METHOD, seconds, many)
    base = bare_result["calls_per_second"]
    return {
        "benchmark": "auth_unary",
        "note": "echo RPC behind the real GatewayInterceptor + CognitoBearerVerifier; DynamoDB off the hot path "
        "(revocations polled in the background; in-memory store here)",
        "concurrency": CONCURRENCY,
        "bare_echo_calls_per_second": round(base, 1),
        "public_calls_per_second": round(public["calls_per_second"], 1),
        "authenticated_cached_calls_per_second": round(authenticated["calls_per_second"], 1),
        "authenticated_first_sight_calls_per_second": round(first_sight["calls_per_second"], 1),
        "ratio_public_vs_bare": round(public["calls_per_second"] / base, 3),
        "ratio_authenticated_vs_bare": round(authenticated["calls_per_second"] / base, 3),
        "ratio_first_sight_vs_bare": round(first_sight["calls_per_second"] / base, 3),
        "errors": int(public["errors"] + authenticated["errors"] + first_sight["errors"] + bare_result["errors"]),
    }

"""A fast fake of DynamoDB (and the user pool's JWKS) at the wire, run in its own process.

    python -m bench.fakes PORTFILE REPORTFILE JWKSFILE

The benchmarked gateways point their real aioboto3 DynamoDB client at it, so the gateway's own work per call
(botocore serialising, signing and parsing) is measured and the emulator's is not: moto takes milliseconds per
call and would be what the numbers showed. It answers the calls the benchmarked paths make with what DynamoDB
answers when nothing is stored: a conditional put of a new chat session succeeds, the turn is written, the
lease released, the revocation poll and the reservations query find nothing. It stores nothing.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from pathlib import Path

from aiohttp import web

from bench.serving import serve_until_terminated

_EMPTY_QUERY = json.dumps({"Items": [], "Count": 0, "ScannedCount": 0}).encode()
_NOTHING = b"{}"
_CONTENT_TYPE = "application/x-amz-json-1.0"


def build(jwks: bytes, counts: collections.Counter[str]) -> web.Application:
    async def dynamodb(request: web.Request) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        await request.read()
        counts[operation] += 1
        body = _EMPTY_QUERY if operation in ("Query", "Scan") else _NOTHING
        return web.Response(body=body, content_type=_CONTENT_TYPE)

    async def keys(request: web.Request) -> web.Response:
        return web.Response(body=jwks, content_type="application/json")

    app = web.Application()
    app.router.add_post("/", dynamodb)
    app.router.add_get("/jwks.json", keys)
    return app


async def serve(port_file: Path, report_file: Path, jwks_file: Path) -> None:
    counts: collections.Counter[str] = collections.Counter()
    runner = web.AppRunner(build(jwks_file.read_bytes(), counts), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await serve_until_terminated(port, port_file)
    finally:
        await runner.cleanup()
        report_file.write_text(json.dumps({"dynamodb_calls": dict(counts)}))


def main() -> None:
    port_file, report_file, jwks_file = (Path(a) for a in sys.argv[1:4])
    asyncio.run(serve(port_file, report_file, jwks_file))


if __name__ == "__main__":
    main()

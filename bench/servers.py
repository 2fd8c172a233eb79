"""Unary benchmark servers, each run in its own process: a bare grpc.aio echo, and the same echo behind the
gateway's interceptor with real bearer verification.

    python -m bench.servers PORTFILE REPORTFILE bare
    python -m bench.servers PORTFILE REPORTFILE gateway JWKS_URL ISSUER CLIENT_ID

The gateway variant uses the production call pipeline (GrpcFace, Authenticator, the metrics every
gateway records), CognitoBearerVerifier and JwksCache (JWKS fetched over HTTP from the benchmark's loopback
fake). DynamoDB is excluded from the hot path: the revocation list is polled in the background in production,
so here it is backed by an in-memory store.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc import aio

from bench.serving import quiet_logging, serve_until_terminated
from gateway.adapters.jwks import HttpKeySource
from gateway.observability import Metrics
from gateway.ports import Revocation
from gateway.services.bearer import BearerPolicy, CognitoBearerVerifier, JwksCache, RevocationList
from gateway.transport.auth import Authenticator
from gateway.transport.handlers import GrpcFace
from gateway.transport.pipeline import ConcurrencyLimiter, Pipeline
from gateway.transport.policy import AuthPolicy, PolicyTable
from gateway.transport.server import server_options

SERVICE = "bench.Echo"
REQUIRED_METHOD = f"/{SERVICE}/Echo"
PUBLIC_METHOD = f"/{SERVICE}/PublicEcho"


class MemoryRevocations:
    """An in-memory RevocationStore (the benchmark keeps DynamoDB off the hot path)."""

    def __init__(self) -> None:
        self.items: list[Revocation] = []

    async def add(self, revocation: Revocation) -> None:
        self.items.append(revocation)

    async def revoked_since(self, since: float) -> list[Revocation]:
        return [r for r in self.items if r.revoked_at >= since]


async def echo(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
    return request


def add_echo_service(server: aio.Server) -> None:
    """Register the echo the way generated `add_*Servicer_to_server` functions do: generic and pre-registered."""
    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "PublicEcho": grpc.unary_unary_rpc_method_handler(echo),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


async def serve(kind: str, port_file: Path, args: list[str]) -> None:
    async with aiohttp.ClientSession() as http:
        server = aio.server(options=server_options())
        if kind == "gateway":
            jwks_url, issuer, client_id = args
            keys = JwksCache(HttpKeySource(http, jwks_url))
            revocations = RevocationList(MemoryRevocations())
            verifier = CognitoBearerVerifier(BearerPolicy(issuer, frozenset({client_id})), keys, revocations)
            await keys.refresh()
            policies = PolicyTable({REQUIRED_METHOD: AuthPolicy.REQUIRED, PUBLIC_METHOD: AuthPolicy.PUBLIC})
            # As GatewayServer builds it: metrics are always recorded (served only with --metrics-listen).
            pipeline = Pipeline(policies, Authenticator(verifier), ConcurrencyLimiter(10_000), metrics=Metrics())
            # As GatewayServer registers its services: through the face, which wraps each handler once.
            server = GrpcFace(pipeline).registrar(server)
        add_echo_service(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        if kind == "gateway":
            # As `gateway serve` does once started (--gc-freeze): what start-up loaded leaves the collector's sight.
            gc.collect()
            gc.freeze()
        try:
            await serve_until_terminated(port, port_file)
        finally:
            await server.stop(1.0)


def main() -> None:
    port_file, report_file, kind, *rest = sys.argv[1:]
    quiet_logging()
    asyncio.run(serve(kind, Path(port_file), rest))
    Path(report_file).write_text(json.dumps({}))


if __name__ == "__main__":
    main()

"""Unary benchmark servers, each run in its own process: a bare grpc.aio echo, and the same echo served by the
gateway's faces with real bearer verification.

    python -m bench.servers PORTFILE REPORTFILE bare [uvloop]
    python -m bench.servers PORTFILE REPORTFILE gateway JWKS_URL ISSUER CLIENT_ID [no-metrics] [uvloop]

The echo is `bench.Echo` (Echo: REQUIRED, PublicEcho: PUBLIC), declared like the contract's services (a
descriptor with the `auth_policy` option, `google.protobuf.BytesValue` in and out) and answered by handlers of
`(request, call)`. The gateway variant serves it as the gateway serves its own table: `GatewayServer` with the
production call pipeline (Authenticator, the metrics every gateway records), CognitoBearerVerifier and JwksCache
(JWKS fetched over HTTP from the benchmark's loopback fake). DynamoDB is excluded from the hot path: the
revocation list is polled in the background in production, so here it is backed by an in-memory store. The bare
variant registers the same echo directly on grpc.aio, with the same message codec.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from google.protobuf import wrappers_pb2
from google.protobuf.descriptor import FileDescriptor
from grpc import aio

from bench.serving import quiet_logging, serve_until_terminated
from booking.v1 import options_pb2
from gateway.adapters.jwks import HttpKeySource
from gateway.calls import Call
from gateway.observability import Metrics
from gateway.ports import Revocation
from gateway.services.bearer import BearerPolicy, CognitoBearerVerifier, JwksCache, RevocationList
from gateway.testing import service_file
from gateway.transport.auth import Authenticator
from gateway.transport.pipeline import ConcurrencyLimiter, Pipeline
from gateway.transport.server import GatewayServer, server_options
from gateway.transport.settings import TransportSettings
from gateway.transport.table import HandlerTable

SERVICE = "bench.Echo"
REQUIRED_METHOD = f"/{SERVICE}/Echo"
PUBLIC_METHOD = f"/{SERVICE}/PublicEcho"
ECHO_FILE = "bench/echo.proto"


def echo_file() -> FileDescriptor:
    """`bench.Echo` as a contract file: Echo declares REQUIRED, PublicEcho PUBLIC."""
    return service_file(
        ECHO_FILE,
        SERVICE,
        {"Echo": (options_pb2.AUTH_POLICY_REQUIRED, False), "PublicEcho": (options_pb2.AUTH_POLICY_PUBLIC, False)},
    )


class MemoryRevocations:
    """An in-memory RevocationStore (the benchmark keeps DynamoDB off the hot path)."""

    def __init__(self) -> None:
        self.items: list[Revocation] = []

    async def add(self, revocation: Revocation) -> None:
        self.items.append(revocation)

    async def revoked_since(self, since: float) -> list[Revocation]:
        return [r for r in self.items if r.revoked_at >= since]


class EchoHandlers:
    """The gateway's handlers of `bench.Echo`."""

    async def Echo(self, request: wrappers_pb2.BytesValue, call: Call) -> wrappers_pb2.BytesValue:
        return request

    PublicEcho = Echo


async def bare_echo(request: wrappers_pb2.BytesValue, context: aio.ServicerContext[Any, Any]) -> Any:
    return request


def add_bare_echo(server: aio.Server) -> None:
    """Register the echo the way generated `add_*Servicer_to_server` functions do: generic and pre-registered."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        name: grpc.unary_unary_rpc_method_handler(
            bare_echo,
            request_deserializer=wrappers_pb2.BytesValue.FromString,
            response_serializer=wrappers_pb2.BytesValue.SerializeToString,
        )
        for name in ("Echo", "PublicEcho")
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


async def serve(kind: str, port_file: Path, args: list[str]) -> None:
    if kind == "bare":
        server = aio.server(options=server_options())
        add_bare_echo(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            await serve_until_terminated(port, port_file)
        finally:
            await server.stop(1.0)
        return
    jwks_url, issuer, client_id, *options = args
    async with aiohttp.ClientSession() as http:
        keys = JwksCache(HttpKeySource(http, jwks_url))
        revocations = RevocationList(MemoryRevocations())
        verifier = CognitoBearerVerifier(BearerPolicy(issuer, frozenset({client_id})), keys, revocations)
        await keys.refresh()
        table = HandlerTable.build([echo_file()], {SERVICE: EchoHandlers()})
        # As the gateway builds it: metrics are always recorded (served only with --metrics-listen); without them
        # only as a step of the benchmark's ladder.
        metrics = None if "no-metrics" in options else Metrics()
        pipeline = Pipeline(Authenticator(verifier), ConcurrencyLimiter(10_000), metrics=metrics)
        # As `gateway serve` runs it (gc freeze after start included), on the gRPC face only.
        settings = TransportSettings(listen="127.0.0.1:0", no_web=True, grace_seconds=1.0)
        async with GatewayServer(table, pipeline, settings) as gateway:
            await serve_until_terminated(gateway.port, port_file)


def main() -> None:
    port_file, report_file, kind, *rest = sys.argv[1:]
    quiet_logging()
    if "uvloop" in rest:
        # The same server on uvloop's event loop (`gateway serve --event-loop uvloop`).
        import uvloop

        rest.remove("uvloop")
        uvloop.run(serve(kind, Path(port_file), rest))
    else:
        asyncio.run(serve(kind, Path(port_file), rest))
    Path(report_file).write_text(json.dumps({}))


if __name__ == "__main__":
    main()

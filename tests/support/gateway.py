"""Real gateways in the test process, built exactly as `gateway serve` builds them."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
from opentelemetry.sdk.trace import TracerProvider

from gateway.adapters.aws import AwsTarget
from gateway.app import App, gateway_server, open_app
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.transport.server import GatewayServer


@dataclass
class RunningGateway:
    """A gateway serving on loopback, its app, an open channel to it, and the devstack behind it."""

    server: GatewayServer
    app: App
    channel: grpc.aio.Channel
    devstack: DevStack

    @property
    def target(self) -> str:
        """ "127.0.0.1:PORT" of the gRPC face."""
        return f"127.0.0.1:{self.server.port}"

    @property
    def web_url(self) -> str:
        """ "http://127.0.0.1:PORT" of the web face (Connect, gRPC-Web and the browser chat)."""
        return f"http://127.0.0.1:{self.server.web_port}"


@asynccontextmanager
async def running_gateway(
    devstack: DevStack,
    settings: Settings,
    *,
    trust_emulator_keys: bool = True,
    target: AwsTarget | None = None,
    bedrock: AwsTarget | None = None,
    tracer: TracerProvider | None = None,
    clock: Callable[[], datetime.datetime] | None = None,
) -> AsyncIterator[RunningGateway]:
    """A gateway on `settings.listen` (use port 0) over the devstack's AWS (or `target`), with a channel to it.

    `bedrock` points the Bedrock client somewhere (a fake endpoint) with credentials of its own. `clock` fixes the
    wall clock of the chat's dates and of bookings.
    """
    async with (
        open_app(
            settings,
            target or devstack.endpoints.target,
            trust_emulator_keys=trust_emulator_keys,
            bedrock=bedrock,
            tracer=tracer,
            clock=clock,
        ) as app,
        gateway_server(app, settings) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield RunningGateway(server=server, app=app, channel=channel, devstack=devstack)

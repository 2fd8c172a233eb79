"""What the gateway fixture hands to tests."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from gateway.app import App
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

"""The composition root: opens every adapter once (one AsyncExitStack) and builds the services.

The only module that imports both services and adapters. Production, `make run` and the tests all build the
gateway through `open_app`; only the `AwsTarget` and Settings differ.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from gateway.adapters.aws import AwsClients, AwsTarget, open_aws_clients
from gateway.adapters.dynamodb.reservation_store import DynamoReservationStore
from gateway.config import Settings
from gateway.ports import BearerVerifier
from gateway.services.reservations import ReservationService


@dataclass
class App:
    """Everything a transport face needs: settings, open clients and the services built on them."""

    settings: Settings
    clients: AwsClients
    reservations: ReservationService
    verifier: BearerVerifier | None = None


def aws_target(settings: Settings) -> AwsTarget:
    """Where the gateway's AWS clients point, from Settings alone (default credential chain)."""
    return AwsTarget(
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        timeout_seconds=settings.aws_timeout_seconds,
    )


@asynccontextmanager
async def open_app(settings: Settings, target: AwsTarget | None = None) -> AsyncIterator[App]:
    """Open the clients and build the services; close everything in reverse order on exit."""
    async with AsyncExitStack() as stack:
        clients = await stack.enter_async_context(open_aws_clients(target or aws_target(settings)))
        reservations = ReservationService(DynamoReservationStore(clients.dynamodb, settings.table_name))
        yield App(settings=settings, clients=clients, reservations=reservations)

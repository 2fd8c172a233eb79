"""The reservation service on the real DynamoDB adapter, against the session's emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.adapters.aws import AwsClients, open_aws_clients
from gateway.adapters.dynamodb.reservation_store import DynamoReservationStore
from gateway.devstack import DevStack
from gateway.services.reservations import ReservationService


@pytest.fixture(scope="session")
async def aws(devstack: DevStack) -> AsyncIterator[AwsClients]:
    """Clients on the emulator, configured exactly as the gateway's."""
    async with open_aws_clients(devstack.endpoints.target) as clients:
        yield clients


@pytest.fixture(scope="session")
def table(devstack: DevStack) -> str:
    """The session's table."""
    return devstack.endpoints.table_name


@pytest.fixture(scope="session")
def reservations(aws: AwsClients, table: str) -> ReservationService:
    """The service as `open_app` builds it."""
    return ReservationService(DynamoReservationStore(aws.dynamodb, table))

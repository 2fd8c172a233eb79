"""The reservation service on the real DynamoDB adapter, against the session's emulator."""

from __future__ import annotations

import pytest

from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb.reservation_store import DynamoReservationStore
from gateway.services.reservations import ReservationService


@pytest.fixture(scope="session")
def reservations(aws: AwsClients, table: str) -> ReservationService:
    """The service as `open_app` builds it."""
    return ReservationService(DynamoReservationStore(aws.dynamodb, table))

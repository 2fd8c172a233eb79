"""Services on the real adapters, against the session's emulator: the reservation service, and what the chat
service's parts share (the session store, the bearer verifier, a signed-in person)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb.reservation_store import DynamoReservationStore
from gateway.adapters.dynamodb.session_store import DynamoChatSessionStore
from gateway.domain import Principal
from gateway.services.reservations import ReservationService
from tests.support.gateway import RunningGateway
from tests.support.identity import Tokens, emulator_sign_in


@dataclass
class Person:
    """Somebody signed in to the emulator's pool: their real tokens and the principal the verifier makes."""

    tokens: Tokens
    principal: Principal


@pytest.fixture(scope="session")
def reservations(aws: AwsClients, table: str) -> ReservationService:
    """The service as `open_app` builds it."""
    return ReservationService(DynamoReservationStore(aws.dynamodb, table))


@pytest.fixture(scope="session")
def store(aws: AwsClients, table: str) -> DynamoChatSessionStore:
    """The chat session store as `open_app` builds it."""
    return DynamoChatSessionStore(aws.dynamodb, table)


@pytest.fixture
async def person(gateway: RunningGateway) -> Person:
    """A new person, signed in."""
    tokens = await emulator_sign_in(gateway.devstack)
    return Person(tokens, await gateway.app.verifier.verify(tokens.access_token))

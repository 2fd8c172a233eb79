"""Clients of the session's gateway, over their own plaintext loopback channels."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from booking_client import BookingClient, MemorySessionStore, connect
from tests.support.gateway import RunningGateway


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[BookingClient]:
    """A library client with an in-memory session store, not signed in."""
    async with connect(gateway.target, tls=False, session_store=MemorySessionStore()) as opened:
        yield opened

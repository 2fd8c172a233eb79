"""The Python client against an address where nothing listens: at once, it says so and what to do."""

from __future__ import annotations

import time

import pytest

from booking_client import MemorySessionStore, Unavailable, connect
from tests.support.ports import refusing_port


async def test_a_call_where_nothing_listens_says_so_and_how_to_start_the_gateway() -> None:
    with refusing_port() as port:
        target = f"127.0.0.1:{port}"
        started = time.monotonic()
        async with connect(target, tls=False, session_store=MemorySessionStore()) as client:
            with pytest.raises(Unavailable) as caught:
                await client.list_properties()
        assert time.monotonic() - started < 2
    assert caught.value.message.startswith(f"nothing answers at {target} (connection refused): ")
    assert "`make run`" in caught.value.message
    assert "connect to the address where it listens" in caught.value.message

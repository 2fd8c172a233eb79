"""Session fixtures: the embedded local AWS, the real gateway on 127.0.0.1:0, a channel to it.

Everything runs on one event loop for the whole session (grpc.aio objects belong to the loop that made them).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import uvloop

from gateway.adapters.aws import AwsClients, open_aws_clients
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.devstack.bootstrap import ensure_table
from tests.support.gateway import RunningGateway, running_gateway

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, LoopFactory]:
    """The loop the in-process tests run on: uvloop's, as `gateway serve` runs by default (`--event-loop`), or with
    `BOOKING_TEST_EVENT_LOOP=asyncio` asyncio's own."""
    if os.environ.get("BOOKING_TEST_EVENT_LOOP", "uvloop") == "uvloop":
        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(scope="session", autouse=True)
def isolated_aws_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No developer AWS configuration or credentials can leak into a test (aiobotocore's pattern)."""
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    saved = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "GATEWAY_"))}
    for key in saved:
        del os.environ[key]
    os.environ["AWS_CONFIG_FILE"] = str(empty)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(empty)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    try:
        yield
    finally:
        for key in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED"):
            os.environ.pop(key, None)
        os.environ.update(saved)


@pytest.fixture(scope="session")
async def devstack(isolated_aws_environment: None) -> AsyncIterator[DevStack]:
    """The embedded local AWS, with table, user pool and demo data."""
    async with DevStack.running(table_name="booking-gateway-tests") as stack:
        yield stack


@pytest.fixture(scope="session")
def settings(devstack: DevStack) -> Settings:
    """Settings of the session's gateway: loopback, port 0 for both faces, pointed at the devstack.

    Every test calls from 127.0.0.1, so the per-address sign-in and chat limits are lifted here; their own tests
    use gateways with small limits (tests/rpc/test_login_limits.py, tests/rpc/test_chat_limits.py).
    """
    return devstack.endpoints.configure(
        Settings.build(
            listen="127.0.0.1:0",
            web_listen="127.0.0.1:0",
            grace_seconds=2.0,
            login_per_peer_limit=1_000_000,
            verify_per_peer_limit=1_000_000,
            chat_anonymous_turns_per_minute=1_000_000,
            chat_anonymous_sessions_per_hour=1_000_000,
            chat_guest_turns_per_minute=1_000_000,
            chat_client_tokens_per_day=1_000_000_000_000,
            chat_gateway_tokens_per_day=1_000_000_000_000,
        )
    )


@pytest.fixture(scope="session")
async def gateway(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """The real gateway, built exactly as `gateway serve` builds it."""
    async with running_gateway(devstack, settings) as running:
        yield running


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder."""
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
async def aws(devstack: DevStack) -> AsyncIterator[AwsClients]:
    """Clients on the emulator, configured exactly as the gateway's (for tests that read or seed the table)."""
    async with open_aws_clients(devstack.endpoints.target) as clients:
        yield clients


@pytest.fixture(scope="session")
def table(devstack: DevStack) -> str:
    """The session's table name."""
    return devstack.endpoints.table_name


@pytest.fixture
async def small_table(aws: AwsClients) -> AsyncIterator[str]:
    """A table of this test's own, for heavy transaction tests: moto copies the whole table on every
    TransactWriteItems, so the session's ever-growing table would make them slow enough to time out."""
    name = f"booking-gateway-{uuid.uuid4().hex[:12]}"
    await ensure_table(aws, name)
    try:
        yield name
    finally:
        await aws.dynamodb.delete_table(TableName=name)

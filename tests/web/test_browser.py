"""The seed's end-to-end journey in a real browser (Debian's Chromium, driven by playwright-core from Node).

This side runs the real gateway (both faces, the built browser chat), makes a property of the test's own so
that its nights are nobody else's, and serves the dev mailbox; `clients/web/tests/browser-journey.mjs` does
what a person does. The screenshot of the signed-in chat is left in `test-artifacts/`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.mailbox_http import mailbox_server
from tests.support.node import ROOT, run_node
from tests.support.reservations import create_property, days_ahead

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"


async def test_the_seeds_journey_in_chromium_books_signs_in_keeps_the_session_and_signs_out(
    gateway: RunningGateway, aws: AwsClients, table: str, tmp_path: Path
) -> None:
    assert CHROMIUM.exists(), "Chromium is missing: `make test` installs it (apt-get install -y chromium)"
    prop = await create_property(aws.dynamodb, table, capacity=4, name=f"Studio s{uuid.uuid4().hex[:8]}")
    config = {
        "chromium": str(CHROMIUM),
        "webUrl": gateway.web_url,
        "propertyName": prop.name,
        "checkIn": days_ahead(70).isoformat(),
        "checkOut": days_ahead(73).isoformat(),
        "name": "Robin Web",
        "email": f"robin-{uuid.uuid4().hex[:10]}@example.com",
        "artifactsDir": str(ARTIFACTS),
    }
    async with mailbox_server(gateway.devstack.mailbox) as mailbox_url:
        output = await run_node("tests/browser-journey.mjs", {**config, "mailboxUrl": mailbox_url}, tmp_path)
    assert "browser journey passed" in output
    assert (ARTIFACTS / "browser-chat-signed-in.png").stat().st_size > 0


@pytest.fixture
async def hasty(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway whose approvals expire at once."""
    async with running_gateway(devstack, settings.replace(chat_approval_ttl_seconds=0.001)) as running:
        yield running


async def test_an_approval_card_that_expires_is_disabled_and_books_nothing(
    hasty: RunningGateway, aws: AwsClients, table: str, tmp_path: Path
) -> None:
    prop = await create_property(aws.dynamodb, table, capacity=4, name=f"Studio s{uuid.uuid4().hex[:8]}")
    config = {
        "chromium": str(CHROMIUM),
        "webUrl": hasty.web_url,
        "propertyName": prop.name,
        "checkIn": days_ahead(75).isoformat(),
        "checkOut": days_ahead(77).isoformat(),
        "email": f"late-{uuid.uuid4().hex[:10]}@example.com",
    }
    async with mailbox_server(hasty.devstack.mailbox) as mailbox_url:
        output = await run_node("tests/browser-approval-expired.mjs", {**config, "mailboxUrl": mailbox_url}, tmp_path)
    assert "browser approval expiry passed" in output


@pytest.fixture
async def brief(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway whose approvals wait 5 s: long enough to see the card open, short enough to wait for its end."""
    async with running_gateway(devstack, settings.replace(chat_approval_ttl_seconds=5.0)) as running:
        yield running


async def test_an_open_approval_card_shows_as_expired_when_the_page_comes_back_after_its_time(
    brief: RunningGateway, aws: AwsClients, table: str, tmp_path: Path
) -> None:
    prop = await create_property(aws.dynamodb, table, capacity=4, name=f"Studio s{uuid.uuid4().hex[:8]}")
    config = {
        "scenario": "expire",
        "chromium": str(CHROMIUM),
        "webUrl": brief.web_url,
        "propertyName": prop.name,
        "checkIn": days_ahead(85).isoformat(),
        "checkOut": days_ahead(87).isoformat(),
        "email": f"away-{uuid.uuid4().hex[:10]}@example.com",
    }
    async with mailbox_server(brief.devstack.mailbox) as mailbox_url:
        output = await run_node("tests/browser-approval-reload.mjs", {**config, "mailboxUrl": mailbox_url}, tmp_path)
    assert "browser approval reload passed" in output

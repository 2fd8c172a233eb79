"""The seed's end-to-end journey in a real browser (Debian's Chromium, driven by playwright-core from Node).

This side runs the real gateway (both faces, the built browser chat), makes a property of the test's own so
that its nights are nobody else's, and serves the dev mailbox; `clients/web/tests/browser-journey.mjs` does
what a person does. The screenshot of the signed-in chat is left in `test-artifacts/`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.node import ROOT, run_browser_stay

ARTIFACTS = ROOT / "test-artifacts"


async def test_the_seeds_journey_in_chromium_books_signs_in_keeps_the_session_and_signs_out(
    gateway: RunningGateway, aws: AwsClients, table: str, tmp_path: Path
) -> None:
    output = await run_browser_stay(
        "tests/browser-journey.mjs",
        gateway,
        aws,
        table,
        tmp_path,
        days=(70, 73),
        email_prefix="robin",
        name="Robin Web",
        artifactsDir=str(ARTIFACTS),
    )
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
    output = await run_browser_stay(
        "tests/browser-approval-expired.mjs", hasty, aws, table, tmp_path, days=(75, 77), email_prefix="late"
    )
    assert "browser approval expiry passed" in output


@pytest.fixture
async def brief(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway whose approvals wait 5 s: long enough to see the card open, short enough to wait for its end."""
    async with running_gateway(devstack, settings.replace(chat_approval_ttl_seconds=5.0)) as running:
        yield running


async def test_an_open_approval_card_shows_as_expired_when_the_page_comes_back_after_its_time(
    brief: RunningGateway, aws: AwsClients, table: str, tmp_path: Path
) -> None:
    output = await run_browser_stay(
        "tests/browser-approval-reload.mjs",
        brief,
        aws,
        table,
        tmp_path,
        days=(85, 87),
        email_prefix="away",
        scenario="expire",
    )
    assert "browser approval reload passed" in output

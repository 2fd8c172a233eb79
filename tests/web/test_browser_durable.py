"""Durable chat turns in Chromium: reload and offline mid-answer resume the turn, Stop cancels it
(`clients/web/tests/browser-durable.mjs` does what a person does); an open approval card survives a reload in the
middle of the turn that asks and after it, and Approve then books (`clients/web/tests/browser-approval-reload.mjs`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from tests.support.chat import chat
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.mailbox_http import mailbox_server
from tests.support.node import CHROMIUM, run_browser_stay, run_node

HELP = "help, what can you do"


@pytest.fixture(scope="module")
async def typing_gateway(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """The scripted agent types a word every 80 ms: its help answer takes about 4 s."""
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=80.0)) as running:
        yield running


async def test_reload_offline_stop_and_sign_in_in_the_middle_of_an_answer(
    typing_gateway: RunningGateway, tmp_path: Path
) -> None:
    assert CHROMIUM.exists(), "Chromium is missing: `make test` installs it (apt-get install -y chromium)"
    reply = (await chat(typing_gateway.channel, HELP)).text
    config = {
        "chromium": str(CHROMIUM),
        "webUrl": typing_gateway.web_url,
        "message": HELP,
        "reply": reply,
        "firstWords": " ".join(reply.split()[:3]),
        "email": f"durable-{uuid.uuid4().hex[:10]}@example.com",
    }
    async with mailbox_server(typing_gateway.devstack.mailbox) as mailbox_url:
        output = await run_node(
            "tests/browser-durable.mjs", {**config, "mailboxUrl": mailbox_url}, tmp_path, timeout=120
        )
    assert "browser durable turns passed" in output


async def test_an_open_approval_card_survives_a_reload_mid_turn_and_after_it_and_approve_books(
    typing_gateway: RunningGateway, aws: AwsClients, table: str, tmp_path: Path
) -> None:
    output = await run_browser_stay(
        "tests/browser-approval-reload.mjs",
        typing_gateway,
        aws,
        table,
        tmp_path,
        days=(80, 82),
        email_prefix="reload",
        timeout=120,
        scenario="approve",
    )
    assert "browser approval reload passed" in output

"""booking-chat and durable turns: Ctrl-C stops the answer (CancelTurn) and returns to the prompt, a second
Ctrl-C quits (also while reconnecting, when the gateway cannot be told); a dropped connection shows
"reconnecting…" and the answer carries on."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.devstack import DevStack
from tests.clients.dark_proxy import DarkableProxy
from tests.clients.test_chat_cli import chat_cli
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.tcp_cut import CuttableProxy

HELP = "help, what can you do"
# The scripted agent's help text: its first and its last words.
ANSWER_STARTS = r"agent> Hello!"
ANSWER_ENDS = r"one-time code\."


@pytest.fixture(scope="module")
async def typing_gateway(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway whose scripted agent types a word every 60 ms (the help text takes about 3 s)."""
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=60.0)) as running:
        yield running


async def test_ctrl_c_stops_the_answer_and_returns_to_the_prompt_and_ctrl_c_at_the_prompt_quits(
    typing_gateway: RunningGateway, tmp_path: Path
) -> None:
    cli = await chat_cli(typing_gateway.target, tmp_path / "session.json")
    try:
        await cli.expect("Not signed in.")
        cli.send(HELP)
        await cli.expect(ANSWER_STARTS)
        cli.process.send_signal(signal.SIGINT)
        await cli.expect(r"\(stopped\)")
        assert cli.process.returncode is None
        assert "one-time code." not in cli.output
        # The conversation goes on at once: the stopped turn has freed the session.
        cli.send(HELP)
        await cli.expect(ANSWER_STARTS)
        await cli.expect(ANSWER_ENDS)
        cli.send("/help")
        await cli.expect("Commands: /login")
        # At the prompt, Ctrl-C quits.
        cli.process.send_signal(signal.SIGINT)
        assert await cli.wait() == 130
    finally:
        await cli.stop()


async def test_a_dropped_connection_shows_reconnecting_and_the_answer_carries_on(
    typing_gateway: RunningGateway, tmp_path: Path
) -> None:
    async with CuttableProxy(typing_gateway.server.port) as proxy:
        cli = await chat_cli(proxy.target, tmp_path / "session.json")
        try:
            await cli.expect("Not signed in.")
            cli.send(HELP)
            await cli.expect(ANSWER_STARTS)
            proxy.cut()
            await cli.expect("reconnecting…")
            await cli.expect(ANSWER_ENDS)
            cli.close_input()
            assert await cli.wait() == 0
        finally:
            await cli.stop()
    assert cli.output.count("I can check") == 1


async def test_ctrl_c_while_reconnecting_stops_the_answer_at_once_when_the_gateway_cannot_be_reached(
    typing_gateway: RunningGateway, tmp_path: Path
) -> None:
    async with DarkableProxy(typing_gateway.server.port) as proxy:
        cli = await chat_cli(proxy.target, tmp_path / "session.json")
        try:
            await cli.expect("Not signed in.")
            cli.send(HELP)
            await cli.expect(ANSWER_STARTS)
            proxy.go_dark()
            await cli.expect("reconnecting…")
            cli.process.send_signal(signal.SIGINT)
            # At once: before the CancelTurn that cannot get through has given up (the line after it), its 5 s
            # seconds later.
            await cli.expect(r"\(stopped\)")
            await cli.expect(r"\(the gateway could not be reached to stop the answer: the turn may still be running")
            assert cli.process.returncode is None
            proxy.go_light()
            # The stopped answer is not resumed: the next one is the only one that ends.
            cli.send(HELP)
            await cli.expect(ANSWER_STARTS)
            await cli.expect(ANSWER_ENDS)
            cli.send("/help")
            await cli.expect("Commands: /login")
            # At the prompt, Ctrl-C quits: the stop left nothing stopping.
            cli.process.send_signal(signal.SIGINT)
            assert await cli.wait() == 130
        finally:
            await cli.stop()
    assert cli.output.count("one-time code.") == 1

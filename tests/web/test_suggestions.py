"""Every suggestion the browser chat or the agent makes names something that exists: a control the page has, or
a message the agent understands.

The browser chat names its controls and example messages in “…” (src/*.ts, index.html); the agent puts its
example messages in "…" (`help_text`, whose example dates are computed from today). A quoted phrase is either the
label of a button on the page, or a message that the agent, asked it first thing in a new conversation, does not
answer with "Sorry, I didn't catch that".
"""

from __future__ import annotations

import datetime
import html
import re
from pathlib import Path

import pytest

from gateway.adapters.scripted_words import help_text
from tests.support.chat import chat
from tests.support.gateway import RunningGateway

WEB = Path(__file__).resolve().parents[2] / "clients" / "web"
PAGE = (WEB / "index.html").read_text()
BUTTONS = {html.unescape(label).strip() for label in re.findall(r"<button[^>]*>([^<]+)</button>", PAGE)}
UI_QUOTED = sorted(
    {
        phrase
        for source in [PAGE, *(p.read_text() for p in (WEB / "src").glob("*.ts"))]
        for phrase in re.findall(r"“([^”]+)”", source)
    }
)
AGENT_QUOTED = sorted(
    phrase for phrase in re.findall(r'"([^"]+)"', help_text(datetime.date.today())) if "…" not in phrase
)
NOT_UNDERSTOOD = "Sorry, I didn't catch that."


def test_the_texts_name_controls_and_messages() -> None:
    assert {"Sign in", "Use another email", "Email me a code"} <= set(UI_QUOTED)  # the texts do name controls
    assert {"Sign in", "Sign out", "My reservations", "Use another email", "Email me a code"} <= BUTTONS


@pytest.mark.parametrize("phrase", [p for p in UI_QUOTED if p not in BUTTONS] + AGENT_QUOTED)
async def test_a_suggested_message_is_understood(gateway: RunningGateway, phrase: str) -> None:
    """Not a control of the page: then it is a message to send, and the agent understands it."""
    turn = await chat(gateway.channel, phrase)
    assert not turn.text.startswith(NOT_UNDERSTOOD), f"{phrase!r} is suggested but not understood: {turn.text}"


async def test_the_dates_the_agent_suggests_can_be_checked(gateway: RunningGateway) -> None:
    """Asked about availability without dates, the agent gives examples; each one, sent next, is checked."""
    asked = await chat(gateway.channel, "what's available?")
    examples = re.findall(r'"([^"]+)"', asked.text)
    assert len(examples) >= 2, asked.text
    for example in examples:
        turn = await chat(gateway.channel, example, session_id=asked.session_id)
        assert [(tool.name, tool.ok) for tool in turn.tools] == [("check_availability", True)], (example, turn.text)

"""Accessibility of the browser chat in Chromium: axe-core finds nothing serious or critical on the empty chat, a
streamed answer, an error and the sign-in card (phone and desktop width); the chat works with the keyboard alone
and new replies land in the live region (`clients/web/tests/accessibility.mjs`)."""

from __future__ import annotations

from pathlib import Path

from tests.support.gateway import RunningGateway
from tests.support.node import CHROMIUM, run_node
from tests.support.reservations import days_ahead


async def test_the_main_views_pass_axe_and_work_with_the_keyboard(gateway: RunningGateway, tmp_path: Path) -> None:
    assert CHROMIUM.exists(), "Chromium is missing: `make test` installs it (apt-get install -y chromium)"
    config = {
        "chromium": str(CHROMIUM),
        "webUrl": gateway.web_url,
        "checkIn": days_ahead(500).isoformat(),
        "checkOut": days_ahead(502).isoformat(),
    }
    output = await run_node("tests/accessibility.mjs", config, tmp_path)
    assert "accessibility passed" in output

"""A broken layout fails the suite: each main view of the browser chat at phone and desktop width, compared in
Chromium with the stored image within a tolerance (`clients/web/tests/screenshots.mjs`; `UPDATE_SCREENSHOTS=1`
stores them anew). A view that differs is left in `test-artifacts/` as `<view>.actual.png`."""

from __future__ import annotations

from pathlib import Path

from tests.support.gateway import RunningGateway
from tests.support.node import CHROMIUM, ROOT, run_node


async def test_each_view_looks_as_stored_at_phone_and_desktop_width(gateway: RunningGateway, tmp_path: Path) -> None:
    assert CHROMIUM.exists(), "Chromium is missing: `make test` installs it (apt-get install -y chromium)"
    config = {"chromium": str(CHROMIUM), "webUrl": gateway.web_url, "artifactsDir": str(ROOT / "test-artifacts")}
    output = await run_node("tests/screenshots.mjs", config, tmp_path)
    assert "screenshots passed" in output

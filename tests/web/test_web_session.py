"""When the browser chat's stored session says its access token expires (`clients/web/tests/session.test.mjs`
compiles `clients/web/src/session.ts` and checks `sessionFromDelivery`): the token's own `exp` when it lies
between now and now + `expires_in` (a TokenDelivery replayed by ResumeChat keeps its original `expires_in`),
else now + `expires_in`."""

from __future__ import annotations

from pathlib import Path

from tests.support.node import run_node


async def test_the_stored_expiry_is_the_access_tokens_exp_when_it_is_plausible(tmp_path: Path) -> None:
    output = await run_node("tests/session.test.mjs", {}, tmp_path, timeout=60)
    assert "fail 0" in output

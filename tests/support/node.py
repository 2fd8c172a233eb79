"""Run the browser chat's Node scripts (node:test files, the Chromium journey) against gateways in this process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.support.processes import run_to_exit

ROOT = Path(__file__).resolve().parent.parent.parent
WEB_CLIENT = ROOT / "clients" / "web"
NODE = shutil.which("node") or "node"


async def run_node(script: str, config: dict[str, Any], tmp_path: Path, *, timeout: float = 120.0) -> str:
    """Run `clients/web/<script>` with WIRE_CONFIG pointing at `config` as JSON; fail the test on a non-zero exit.

    Node tests go through `node --test`; anything else runs as a plain script. Returns the combined output.
    """
    config_file = tmp_path / "wire-config.json"
    config_file.write_text(json.dumps(config))
    argv = [NODE, "--test", "--test-reporter=spec", script] if script.endswith(".test.mjs") else [NODE, script]
    code, out, err = await run_to_exit(
        *argv, env={"WIRE_CONFIG": str(config_file), "NODE_NO_WARNINGS": "1"}, timeout=timeout, cwd=WEB_CLIENT
    )
    output = f"{out}\n{err}"
    assert code == 0, f"{script} failed (exit {code}):\n{output[-8000:]}"
    return output

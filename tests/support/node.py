"""Run the browser chat's Node scripts (node:test files, the Chromium journey) against gateways in this process."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from gateway.adapters.aws import AwsClients
from tests.support.gateway import RunningGateway
from tests.support.mailbox_http import mailbox_server
from tests.support.processes import run_to_exit
from tests.support.reservations import create_property, days_ahead

ROOT = Path(__file__).resolve().parent.parent.parent
WEB_CLIENT = ROOT / "clients" / "web"
NODE = shutil.which("node") or "node"
CHROMIUM = Path("/usr/bin/chromium")


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


async def run_browser_stay(
    script: str,
    gateway: RunningGateway,
    aws: AwsClients,
    table: str,
    tmp_path: Path,
    *,
    days: tuple[int, int],
    email_prefix: str,
    timeout: float = 120.0,
    **extra: Any,
) -> str:
    """Run a Chromium script of the browser chat (`clients/web/<script>`) that books a stay: a new property of its
    own, check-in and check-out `days` ahead, a new email, the gateway's mailbox served to the script; `extra`
    goes into its config as it is. Returns the script's output (the test fails on a non-zero exit)."""
    assert CHROMIUM.exists(), "Chromium is missing: `make test` installs it (apt-get install -y chromium)"
    prop = await create_property(aws.dynamodb, table, capacity=4, name=f"Studio s{uuid.uuid4().hex[:8]}")
    config = {
        "chromium": str(CHROMIUM),
        "webUrl": gateway.web_url,
        "propertyName": prop.name,
        "checkIn": days_ahead(days[0]).isoformat(),
        "checkOut": days_ahead(days[1]).isoformat(),
        "email": f"{email_prefix}-{uuid.uuid4().hex[:10]}@example.com",
        **extra,
    }
    async with mailbox_server(gateway.devstack.mailbox) as mailbox_url:
        return await run_node(script, {**config, "mailboxUrl": mailbox_url}, tmp_path, timeout=timeout)

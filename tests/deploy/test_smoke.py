"""deploy/smoke.py, the deployed gateway's smoke test, run as the docs say against a real gateway on loopback;
the code it asks for comes from the dev mailbox, as a person would copy it from theirs."""

from __future__ import annotations

import asyncio
import sys

from gateway.testing import eventually
from tests.deploy.support import DEPLOY
from tests.support.auth import new_email
from tests.support.gateway import RunningGateway


async def test_the_smoke_script_signs_in_books_cancels_and_signs_out(gateway: RunningGateway) -> None:
    email = new_email("smoke")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DEPLOY / "smoke.py"),
        "--target",
        gateway.target,
        "--insecure",
        "--email",
        email,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        lines: list[str] = []
        while not any(line.startswith("code sent to") for line in lines):
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert line, f"smoke.py ended early: {lines}"
            lines.append(line.strip())
        code = await eventually(
            lambda: gateway.devstack.mailbox.latest_code(email), timeout_seconds=10, what="the code"
        )
        assert email not in lines[-1]  # only the masked address is printed
        process.stdin.write(f"{code}\n".encode())
        await process.stdin.drain()
        rest, errors = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = lines + rest.decode().splitlines()
    assert process.returncode == 0, f"{output}\n{errors.decode()}"
    assert output[-1] == "smoke test passed"
    assert [line.split(":")[0] for line in output if line.startswith(("ok", "FAILED"))] == ["ok"] * 6

"""docs/chat.md's durable-turn recipes run as written: the Python example, and the grpcurl steps (through
`buf curl`, which reads the same reflection; grpcurl is not installed here)."""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings
from gateway.devstack import DevStack
from tests.support.buf import BUF
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import run_to_exit

ROOT = Path(__file__).resolve().parents[2]
CHAT_DOC = (ROOT / "docs" / "chat.md").read_text()


def section(heading: str) -> str:
    start = CHAT_DOC.index(heading)
    ends = [e for e in (CHAT_DOC.find(mark, start + len(heading)) for mark in ("\n## ", "\n### ")) if e != -1]
    return CHAT_DOC[start : min(ends, default=len(CHAT_DOC))]


def fenced(text: str, language: str) -> list[str]:
    """The blocks of `language`, whatever marks follow it on the fence (`sh no-run`, docs/development.md)."""
    return re.findall(rf"```{language}(?: [^\n]*)?\n(.*?)```", text, re.S)


def events_of(output: str) -> list[dict[str, Any]]:
    decoder, events, position = json.JSONDecoder(), [], 0
    while position < len(output.rstrip()):
        while output[position].isspace():
            position += 1
        message, position = decoder.raw_decode(output, position)
        events.append(message["event"])
    return events


@pytest.fixture(scope="module")
async def typing_gateway(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=30.0)) as running:
        yield running


async def test_the_python_recipe_runs(typing_gateway: RunningGateway, tmp_path: Path) -> None:
    (example,) = fenced(section("### From Python"), "python")
    script = tmp_path / "recipe.py"
    script.write_text(example.replace('"127.0.0.1:50051"', f'"{typing_gateway.target}"'))
    code, out, err = await run_to_exit(sys.executable, str(script), timeout=60)
    assert code == 0, err
    assert "[END_TURN]" in out
    assert out.rstrip().endswith("[CANCELLED]")


async def test_the_shell_recipe_runs_step_by_step(typing_gateway: RunningGateway) -> None:
    (block,) = fenced(section("### From the shell"), "sh")
    lines = [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    assert lines[0] == "GW=127.0.0.1:50051"
    env = {"GW": typing_gateway.target, "BUF": str(BUF)}
    methods = []
    for line in lines[1:]:
        if line.startswith("#"):
            continue
        args = shlex.split(line)
        assert args[:2] == ["grpcurl", "-plaintext"], line
        method = args[-1]
        methods.append(method.rsplit("/", 1)[-1])
        # The same call through buf curl: only the command and the address form change; the shell expands the rest.
        command = re.sub(r"\$GW (\S+)$", r"http://$GW/\1", line).replace(
            "grpcurl -plaintext", '"$BUF" curl --protocol grpc --http2-prior-knowledge --timeout 20s', 1
        )
        code, out, err = await run_to_exit("bash", "-c", command, env=env, timeout=60)
        assert code == 0, f"{line}\n{err}"
        if method.endswith("/Chat"):
            started = events_of(out)[0]["sessionStarted"]
            env["SESSION_ID"], env["RESUME_TOKEN"] = started["sessionId"], started["resumeToken"]
        elif method.endswith("/ResumeChat"):
            events = events_of(out)
            assert events[0]["sequence"] == "4"
            assert events[-1]["turnComplete"]["stopReason"] == "STOP_REASON_END_TURN"
        else:
            assert json.loads(out) == {}  # the turn had ended: nothing to cancel
    assert methods == ["Chat", "ResumeChat", "CancelTurn"]

"""The docs run as written: every recipe in README.md and docs/*.md, in order, against one fresh gateway started as
`make run` starts it, printing what the docs show.

The recipes are the code blocks marked `recipe` (the convention: docs/development.md, "Recipes in the docs";
the reading and the comparison: tests/support/recipes.py). Each command runs in bash from a scratch directory
that looks like the checkout (its top-level entries linked), with its own HOME, shell variables carried from
one command to the next, and a terminal as its stdin and stdout, like a person's. The docs' addresses
(127.0.0.1:50051, 127.0.0.1:8080) are swapped for the gateway's own ports on the way in and back on the way out.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from pathlib import Path

from booking.v1 import auth_pb2, chat_pb2, reservations_pb2
from tests.support.interactive import Interactive
from tests.support.processes import GatewayProcess, start_gateway
from tests.support.recipes import (
    DOCUMENTS,
    ROOT,
    RUNNABLE_LANGUAGES,
    Block,
    Step,
    blocks,
    compare,
    fill,
    render_terminal,
    steps,
)

DOC_TARGET, DOC_WEB = "127.0.0.1:50051", "127.0.0.1:8080"
CODE_LINE = re.compile(r"\[dev mailbox\] code for \S+: (\d+)")
# Variables bash sets for itself: never carried from one command to the next.
BASH_OWN = "SHELLOPTS|BASHOPTS|BASH_[A-Z_]*|PWD|OLDPWD|SHLVL|_|PS1|PS2|PS4"
CONTRACT = {
    f"{service.full_name}/{method.name}"
    for module in (auth_pb2, chat_pb2, reservations_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
}


def all_blocks() -> list[Block]:
    return [block for path in DOCUMENTS for block in blocks(path)]


def test_every_runnable_block_says_whether_it_is_a_recipe() -> None:
    unmarked = [
        block.where
        for block in all_blocks()
        if block.language in RUNNABLE_LANGUAGES and not {"recipe", "no-run"} & set(block.marks)
    ]
    assert not unmarked, f"mark these blocks `recipe` or `no-run` (docs/development.md): {unmarked}"


def test_the_grpcurl_block_calls_what_the_buf_curl_recipe_calls() -> None:
    """grpcurl is not installed here, so its block is checked for the same RPCs with the same bodies and headers."""
    (every_rpc,) = [b for b in all_blocks() if b.is_recipe and "http://$GW/booking.v1.AuthService/SignOut" in b.text]
    (grpcurl,) = [b for b in all_blocks() if b.language == "sh" and "grpcurl -plaintext $GW list" in b.text]

    def calls(lines: list[str], prefix: str, method_of: int) -> list[tuple[str, str, tuple[str, ...]]]:
        found = []
        for line in lines:
            if not line.startswith(prefix) or line.endswith(" list") or "--list-methods" in line:
                continue
            args = shlex.split(line)
            body = next((args[i + 1] for i, arg in enumerate(args) if arg == "-d"), "")
            headers = tuple(args[i + 1] for i, arg in enumerate(args) if arg == "-H")
            found.append((args[method_of].removeprefix("http://$GW/"), body, headers))
        return found

    buf_lines = [step.command.replace("\\\n", " ") for step in steps(every_rpc)]
    grpcurl_lines = [line for line in grpcurl.text.replace("\\\n", " ").splitlines() if line.strip()]
    buf_calls = calls(buf_lines, "$BUF", -1)
    assert {method for method, _, _ in buf_calls} == CONTRACT | {"grpc.health.v1.Health/Check"}
    assert buf_calls == calls(grpcurl_lines, "grpcurl", -1)


class Runner:
    """Runs the recipes in order and keeps what they printed and the values of the placeholders."""

    def __init__(self, gateway: GatewayProcess, web: str, scratch: Path) -> None:
        self.gateway = gateway
        self.web = web.removeprefix("http://")
        self.scratch = scratch
        self.values: dict[str, str] = {}
        self.codes_used = 0  # codes on the console that a recipe has used (or passed over)
        # How many codes the console showed when the previous command and this one started.
        self.codes_at_start = (0, 0)
        self.state = scratch.parent / "state.sh"
        self.state.write_text("")
        self.last_status = 0
        path = ":".join(p for p in os.environ["PATH"].split(":") if not p.startswith(str(ROOT)))
        self.env = {
            "HOME": str(scratch.parent / "home"),
            "PATH": path,
            "TERM": "dumb",
            "npm_config_update_notifier": "false",  # npm's "new version available" notice on a terminal
            "BOOKING_GATEWAY_TARGET": gateway.target,
            "XDG_CONFIG_HOME": "",
            "BOOKING_SESSION_FILE": "",
            "VIRTUAL_ENV": "",
        }
        (scratch.parent / "home").mkdir()

    def inward(self, text: str) -> str:
        return text.replace(DOC_TARGET, self.gateway.target).replace(DOC_WEB, self.web)

    def outward(self, text: str) -> str:
        return text.replace(self.gateway.target, DOC_TARGET).replace(self.web, DOC_WEB)

    def codes(self) -> list[str]:
        return [m.group(1) for line in self.gateway.stdout_lines if (m := CODE_LINE.search(line))]

    async def next_code(self, since: int) -> str:
        """The newest one-time code on the gateway's console among those printed after the first `since`, once
        one has come that no recipe used yet."""

        def code() -> tuple[str, int] | None:
            found = self.codes()
            return (found[-1], len(found)) if len(found) > max(self.codes_used, since) else None

        value, self.codes_used = await self.gateway.printed(code, timeout=30)
        return value

    async def filled(self, text: str, where: str, *, typed: bool = False) -> str:
        """`text` with its placeholders filled in. `<code>` in a command is the code the command before it had
        sent (so printed since that one started); in a typed line, one this command had sent."""
        if "<code>" in text:
            previous, this = self.codes_at_start
            self.values["code"] = await self.next_code(this if typed else previous)
        return self.inward(fill(text, self.values, where))

    async def run(self, block: Block, step: Step) -> tuple[int, str]:
        """Run one command (answering its prompts); return its exit status and what the terminal showed."""
        self.codes_at_start = (self.codes_at_start[1], len(self.codes()))
        command = await self.filled(step.command, block.where)
        script = (
            f"set -a; source {shlex.quote(str(self.state))}; cd {shlex.quote(str(self.scratch))}; "
            f"(exit {self.last_status})\n{command}\n__status=$?\n"
            f"export -p | grep -Ev '^declare -x ({BASH_OWN})=' > {shlex.quote(str(self.state))}\nexit $__status\n"
        )
        run = await Interactive.start("bash", "-c", script, env={**self.env}, cwd=str(self.scratch), terminal=True)
        try:
            for prompt, typed in step.typed:
                await run.expect(re.escape(prompt), timeout=60)
                run.send(await self.filled(typed, block.where, typed=True))
            status = await run.wait(timeout=90)
        finally:
            await run.stop()
        self.last_status = status
        return status, self.outward(render_terminal(run.output))

    async def console(self, block: Block) -> None:
        commands = steps(block)
        for index, step in enumerate(commands):
            status, printed = await self.run(block, step)
            values = compare(step.expected, printed)
            assert values is not None, (
                f"{block.where}: `{step.command}` printed something else than the docs show:\n"
                + "\n".join(difflib.unified_diff(step.expected, printed.splitlines(), "docs", "printed", lineterm=""))
            )
            # A command may fail only where the docs show its status next (`$ echo $?`).
            status_shown = index + 1 < len(commands) and commands[index + 1].command == "echo $?"
            assert status == 0 or status_shown, f"{block.where}: `{step.command}` exited {status}:\n{printed}"
            self.values.update(values)

    def gateway_console(self, block: Block) -> None:
        """What `make run` prints on its console at start."""
        expected = block.text.rstrip("\n").split("\n")
        printed = self.outward("\n".join(self.gateway.stdout_lines[: len(expected)]))
        assert compare(expected, printed) is not None, (
            f"{block.where}: the gateway printed something else at start than the docs show:\n"
            + "\n".join(difflib.unified_diff(expected, printed.splitlines(), "docs", "printed", lineterm=""))
        )

    async def script(self, block: Block) -> None:
        status, printed = await self.run(block, Step(block.text.rstrip("\n")))
        assert status == 0, f"{block.where}: the script exited {status}:\n{printed}"


async def test_every_recipe_runs_in_order_and_prints_what_the_docs_show(tmp_path: Path) -> None:
    recipes = [block for block in all_blocks() if block.is_recipe]
    assert recipes
    scratch = tmp_path / "checkout"
    scratch.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != ".git":
            (scratch / entry.name).symlink_to(entry)
    # As `make run` starts it (the ports are the test's own).
    gateway = await start_gateway("--log-format", "text")
    try:
        runner = Runner(gateway, await gateway.web_url(), scratch)
        for block in recipes:
            if "gateway-console" in block.marks:
                runner.gateway_console(block)
            elif block.file_name is not None:
                (scratch / block.file_name).write_text(runner.inward(block.text))
            elif block.language == "console":
                await runner.console(block)
            else:
                await runner.script(block)
    finally:
        await gateway.stop()

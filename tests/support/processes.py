"""Start `gateway serve` as a subprocess and wait for the line that says where it listens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

LISTENING = re.compile(r"gateway listening on (\S+):(\d+)")
WEB_URL = re.compile(r"browser chat: open (https?://\S+?)/? ")
GATEWAY_SCRIPT = Path(sys.executable).parent / "gateway"


@dataclass
class GatewayProcess:
    """A running `gateway serve` subprocess and everything it printed so far."""

    process: asyncio.subprocess.Process
    port: int
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def wait(self, timeout: float) -> int:
        """Wait for exit; return the exit code."""
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.gather(*self._readers)
        return code

    async def web_url(self, timeout: float = 10.0) -> str:
        """The web face's base URL ("http://127.0.0.1:PORT"), from the line `serve` prints for people."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.stdout_lines:
                    match = WEB_URL.search(line)
                    if match:
                        return match.group(1)
                await asyncio.sleep(0.02)

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the process's whole group (it was started as a session leader)."""
        if self.process.returncode is None:
            os.killpg(self.process.pid, sig)

    async def stop(self) -> None:
        """Kill it, and anything it started, if it is still running."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def _pump(stream: asyncio.StreamReader, sink: list[str]) -> None:
    while line := await stream.readline():
        sink.append(line.decode(errors="replace").rstrip("\n"))


async def start_gateway(
    *args: str, env: dict[str, str] | None = None, command: list[str] | None = None, timeout: float = 60.0
) -> GatewayProcess:
    """Start `gateway serve ARGS` (or `command`) and return once it prints its listening line."""
    argv = command or [str(GATEWAY_SCRIPT), "serve", "--listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0", *args]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        # Its own process group, so `stop` also ends what it started (make's child gateway, say).
        start_new_session=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    stdout: list[str] = []
    stderr: list[str] = []
    readers = [asyncio.create_task(_pump(process.stdout, stdout)), asyncio.create_task(_pump(process.stderr, stderr))]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for line in stdout:
            match = LISTENING.search(line)
            if match:
                return GatewayProcess(process, int(match.group(2)), stdout, stderr, readers)
        if process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    proc = GatewayProcess(process, 0, stdout, stderr, readers)
    await proc.stop()
    raise AssertionError(f"gateway did not start: stdout={stdout[-20:]} stderr={stderr[-20:]}")


async def run_to_exit(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60.0, cwd: Path | None = None
) -> tuple[int, str, str]:
    """Run a command to completion (killed after `timeout`); return (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")

"""Start `gateway serve` as a subprocess and wait for the line that says where it listens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

LISTENING = re.compile(r"gateway listening on (\S+):(\d+)")
WEB_URL = re.compile(r"browser chat: open (https?://\S+?)/? ")
GATEWAY_SCRIPT = Path(sys.executable).parent / "gateway"

T = TypeVar("T")


@dataclass
class GatewayProcess:
    """A running `gateway serve` subprocess and everything it printed so far."""

    process: asyncio.subprocess.Process
    port: int
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)
    # Notified on each line printed, on either stream, and when a stream ends.
    _printed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _streams_ended: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def wait(self, timeout: float) -> int:
        """Wait for exit; return the exit code."""
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.gather(*self._readers)
        return code

    @property
    def output_ended(self) -> bool:
        """Both streams are closed: the process has exited (or closed them), nothing more will be printed."""
        return self._streams_ended == len(self._readers)

    async def printed(self, found: Callable[[], T | None], timeout: float = 10.0) -> T:
        """Wait until `found()` (which reads `stdout_lines` / `stderr_lines`) is not None, checked on each line.

        TimeoutError when it is still None after `timeout` seconds or once the output has ended.
        """
        async with asyncio.timeout(timeout), self._printed:
            while (result := found()) is None:
                if self.output_ended:
                    raise TimeoutError("the process's output ended first")
                await self._printed.wait()
            return result

    async def web_url(self, timeout: float = 10.0) -> str:
        """The web face's base URL ("http://127.0.0.1:PORT"), from the line `serve` prints for people."""

        def url() -> str | None:
            return next((match.group(1) for line in self.stdout_lines if (match := WEB_URL.search(line))), None)

        return await self.printed(url, timeout)

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

    async def _pump(self, stream: asyncio.StreamReader, sink: list[str]) -> None:
        try:
            while line := await stream.readline():
                sink.append(line.decode(errors="replace").rstrip("\n"))
                async with self._printed:
                    self._printed.notify_all()
        finally:
            self._streams_ended += 1
            async with self._printed:
                self._printed.notify_all()


async def start_gateway(
    *args: str,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    timeout: float = 60.0,
    pass_fds: tuple[int, ...] = (),
) -> GatewayProcess:
    """Start `gateway serve ARGS` (or `command`) and return once it prints its listening line; `pass_fds` are
    inherited by it."""
    argv = command or [str(GATEWAY_SCRIPT), "serve", "--listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0", *args]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        # Its own process group, so `stop` also ends what it started (make's child gateway, say).
        start_new_session=True,
        pass_fds=pass_fds,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    started = GatewayProcess(process, 0)
    started._readers.extend(
        asyncio.create_task(started._pump(stream, sink))
        for stream, sink in ((process.stdout, started.stdout_lines), (process.stderr, started.stderr_lines))
    )

    def port() -> int | None:
        return next((int(match.group(2)) for line in started.stdout_lines if (match := LISTENING.search(line))), None)

    try:
        started.port = await started.printed(port, timeout)
    except TimeoutError:
        await started.stop()
        stdout, stderr = started.stdout_lines, started.stderr_lines
        raise AssertionError(f"gateway did not start: stdout={stdout[-20:]} stderr={stderr[-20:]}") from None
    return started


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

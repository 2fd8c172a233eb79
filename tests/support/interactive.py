"""Drive a command line program the way a person (or a script) would: send lines, wait for text.

Through pipes by default; `terminal=True` gives the program a pseudo-terminal as stdin and stdout instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import signal
from dataclasses import dataclass, field


@dataclass
class Interactive:
    """A running program, everything it printed so far, and a cursor for `expect`."""

    process: asyncio.subprocess.Process
    _write_fd: int | None = None
    _read_fd: int | None = None
    output: str = ""
    _seen: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _eof: bool = False
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, *argv: str, env: dict[str, str] | None = None, cwd: str | None = None, terminal: bool = False
    ) -> Interactive:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        if terminal:
            controller, child = pty.openpty()
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=child, stdout=child, stderr=child, env=full_env, cwd=cwd, start_new_session=True
            )
            os.close(child)
            running = cls(process, _write_fd=controller, _read_fd=controller)
            loop = asyncio.get_running_loop()
            loop.add_reader(controller, running._read_terminal)
            return running
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        running = cls(process)
        running._reader = asyncio.create_task(running._read_pipe())
        return running

    def _append(self, data: bytes) -> None:
        self.output += data.decode(errors="replace").replace("\r\n", "\n")
        self._changed.set()

    async def _read_pipe(self) -> None:
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.read(4096):
            self._append(chunk)
        self._eof = True
        self._changed.set()

    def _read_terminal(self) -> None:
        assert self._read_fd is not None
        try:
            chunk = os.read(self._read_fd, 4096)
        except OSError:  # EIO: the program closed the terminal (it exited)
            chunk = b""
        if chunk:
            self._append(chunk)
            return
        asyncio.get_running_loop().remove_reader(self._read_fd)
        self._eof = True
        self._changed.set()

    async def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait until the output after the previous match contains `pattern` (a regex); return the match."""
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                match = regex.search(self.output, self._seen)
                if match:
                    self._seen = match.end()
                    return match
                if self._eof:
                    raise AssertionError(f"exited before printing {pattern!r}; output:\n{self.output}")
                self._changed.clear()
                await self._changed.wait()

    def send(self, line: str) -> None:
        """Type `line` and Enter."""
        data = (line + "\n").encode()
        if self._write_fd is not None:
            os.write(self._write_fd, data)
        else:
            assert self.process.stdin is not None
            self.process.stdin.write(data)

    def close_input(self) -> None:
        """End of input (Ctrl-D on a terminal)."""
        if self._write_fd is not None:
            os.write(self._write_fd, b"\x04")
        else:
            assert self.process.stdin is not None
            self.process.stdin.close()

    async def wait(self, timeout: float = 30.0) -> int:
        """Wait for the program to exit and for its last output; return the exit code."""
        code = await asyncio.wait_for(self.process.wait(), timeout)
        async with asyncio.timeout(timeout):
            while not self._eof:
                self._changed.clear()
                await self._changed.wait()
        return code

    async def stop(self) -> None:
        """Kill the program (and its group) if it still runs, and release the terminal."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._read_fd is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._read_fd)
            with contextlib.suppress(OSError):
                os.close(self._read_fd)
            self._read_fd = self._write_fd = None
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()

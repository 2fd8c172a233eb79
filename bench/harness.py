"""The orchestrator's side: start server processes, run load-generator processes, read their JSON.

Every process is bounded: a server that does not publish its port within `START_TIMEOUT_SECONDS` is killed, a
load generator is killed after its own timeout, and a server that does not stop within `STOP_TIMEOUT_SECONDS`
of SIGTERM is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procfs

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


class BenchError(RuntimeError):
    """A benchmark process failed to start, crashed or did not answer in time."""


@dataclass
class Server:
    """A running server process: its address and, once it has stopped, its report."""

    process: asyncio.subprocess.Process
    port: int
    more_ports: tuple[int, ...] = ()
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU used so far by the server and its child processes (workers)."""
        return procfs.tree_cpu_seconds(self.pid)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@asynccontextmanager
async def server(module: str, *args: str, env: dict[str, str] | None = None) -> AsyncIterator[Server]:
    """Run `python -m MODULE PORTFILE REPORTFILE ARGS...` until the block ends; then SIGTERM it and read its
    report (REPORTFILE, JSON) into `Server.report`."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        port_file = Path(tmp) / "port"
        report_file = Path(tmp) / "report.json"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, str(port_file), str(report_file), *args, env=_environment(env)
        )
        try:
            port, *more_ports = await _wait_for_ports(process, port_file)
            running = Server(process, port, tuple(more_ports))
            yield running
        finally:
            await _stop(process)
        if report_file.exists():
            running.report = json.loads(report_file.read_text())


async def _wait_for_ports(process: asyncio.subprocess.Process, port_file: Path) -> list[int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_SECONDS
    while loop.time() < deadline:
        if port_file.exists():
            return [int(p) for p in port_file.read_text().split()]
        if process.returncode is not None:
            raise BenchError(f"server process exited with {process.returncode} before listening")
        await asyncio.sleep(0.02)
    raise BenchError("server process did not listen in time")


_LISTENING = re.compile(r"gateway listening on (\S+):(\d+)")


@asynccontextmanager
async def gateway_serve(*args: str, env: dict[str, str]) -> AsyncIterator[Server]:
    """`gateway serve --listen 127.0.0.1:0 ARGS` as a subprocess, until the block ends (then SIGTERM)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--listen",
        "127.0.0.1:0",
        *args,
        env=_environment(env),
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        port = 0
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            while not port:
                line = await process.stdout.readline()
                if not line:
                    raise BenchError(f"gateway serve exited before listening: {lines[-5:]}")
                lines.append(line.decode(errors="replace").rstrip())
                if match := _LISTENING.search(lines[-1]):
                    port = int(match.group(2))
        # Keep reading its console so that it never blocks on a full pipe.
        drain = asyncio.create_task(_discard(process.stdout))
        try:
            yield Server(process, port)
        finally:
            await _stop(process)
            await drain
    finally:
        await _stop(process)


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def client(module: str, *args: str, limit_seconds: float, output: Path | None = None) -> dict[str, Any]:
    """Run a load generator, `python -m MODULE ARGS...`, and return the JSON object it prints last (or, with
    `output`, the one it wrote to that file)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_environment(None),
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), limit_seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BenchError(f"{module} {' '.join(args)} did not finish within {limit_seconds} s") from None
    if process.returncode != 0:
        raise BenchError(f"{module} {' '.join(args)} failed: {err.decode(errors='replace')[-2000:]}")
    text = output.read_text() if output is not None else out.decode().strip().splitlines()[-1]
    result: dict[str, Any] = json.loads(text)
    return result


def _environment(extra: dict[str, str] | None) -> dict[str, str]:
    """This environment without AWS or GATEWAY settings (nothing of the developer's leaks in), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GATEWAY_"))}
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(extra or {})
    return env


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max, rounded (values already in milliseconds)."""
    return {
        "p50": round(statistics.median(values), 2) if values else 0.0,
        "p99": round(quantile(values, 0.99), 2),
        "max": round(max(values), 2) if values else 0.0,
        "n": len(values),
    }

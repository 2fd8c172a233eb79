"""`gateway serve` subprocesses over the test session's emulator, and what can be read of them from outside.

The devstack runs in the test process (so its dev mailbox and table are at hand); each subprocess is pointed at
it through GATEWAY_* variables, as a replica in production is pointed at AWS. The emulator's signing key is
trusted by a subprocess only because this process, which runs the emulator, hands it the emulator's secret down
an inherited pipe (`gateway.devstack.trust.grant`), as the `--workers` supervisor does; no variable can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gateway.config import Settings
from gateway.devstack import trust
from gateway.devstack.stack import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY
from tests.support.processes import GatewayProcess, start_gateway

START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 60.0


def replica_environment(settings: Settings) -> dict[str, str]:
    """The environment of a `gateway serve` replica with `settings` (already pointed at the devstack, like the
    `settings` fixture): GATEWAY_* variables and the emulator's dummy credentials (no trust in its key)."""
    return {
        **settings.to_environment(),
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
    }


async def start_replica(settings: Settings) -> GatewayProcess:
    """One `gateway serve` with `settings` (pointed at the devstack), on 127.0.0.1 and a port of its own choosing,
    logging JSON."""
    assert settings.aws.endpoint_url is not None
    granted = trust.grant(settings.aws.endpoint_url)
    try:
        replica = await start_gateway(
            "--log-format",
            "json",
            env={**replica_environment(settings), **granted.environment},
            pass_fds=granted.pass_fds,
            timeout=START_TIMEOUT_SECONDS,
        )
    finally:
        granted.close()
    if any("local AWS emulator" in line for line in replica.stdout_lines):
        await replica.stop()
        raise AssertionError("the replica started an emulator of its own instead of using the devstack")
    return replica


@asynccontextmanager
async def running_replicas(settings: Settings, count: int) -> AsyncIterator[list[GatewayProcess]]:
    """`count` replicas started side by side; killed on exit if the test has not stopped them."""
    started = await asyncio.gather(*(start_replica(settings) for _ in range(count)), return_exceptions=True)
    replicas = [r for r in started if isinstance(r, GatewayProcess)]
    try:
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield replicas
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))


def json_logs(replica: GatewayProcess) -> list[dict[str, Any]]:
    """The replica's JSON log lines (stderr) so far."""
    entries = []
    for line in list(replica.stderr_lines):
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries


def access_log(replica: GatewayProcess) -> dict[str, dict[str, Any]]:
    """The replica's access log lines ("call": method, code, duration) by request id."""
    return {
        str(entry["request_id"]): entry
        for entry in json_logs(replica)
        if entry.get("logger") == "gateway.access" and entry.get("message") == "call"
    }


async def served_by(replicas: list[GatewayProcess], request_id: str, wait_seconds: float = 10.0) -> int:
    """The index of the one replica whose access log has `request_id` (the line may still be on its way)."""

    def logged(replica: GatewayProcess) -> bool:
        # The substring test first: the log is parsed only once the id has been printed.
        return any(request_id in line for line in replica.stderr_lines) and request_id in access_log(replica)

    first: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def watch(n: int) -> None:
        with contextlib.suppress(TimeoutError):  # the others: this one never logs it
            await replicas[n].printed(lambda: logged(replicas[n]) or None, wait_seconds)
            if not first.done():
                first.set_result(n)

    watchers = [asyncio.create_task(watch(n)) for n in range(len(replicas))]
    try:
        async with asyncio.timeout(wait_seconds):
            winner = await first
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    found = [n for n, replica in enumerate(replicas) if logged(replica)]
    assert found == [winner], f"request {request_id} logged by replicas {found}"
    return winner


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    """File descriptors a process holds open, from /proc."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def mib(count: int) -> str:
    """Bytes as MiB with one decimal."""
    return f"{count / 2**20:.1f} MiB"


def count_by(values: Iterable[str]) -> dict[str, int]:
    """How often each value occurs."""
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts

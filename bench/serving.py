"""What every benchmark server process does: publish its port, serve until SIGTERM, then write its report."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path


def quiet_logging() -> None:
    """Benchmarks measure the servers' work, not their logs: every server runs with logging off."""
    logging.disable(logging.CRITICAL)


async def serve_until_terminated(port: int, port_file: Path, *more_ports: int) -> None:
    """Publish `port` and `more_ports` (written once bound: the orchestrator waits for the file) and wait for
    SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    partial = port_file.with_suffix(".partial")
    partial.write_text(" ".join(str(p) for p in (port, *more_ports)))
    partial.rename(port_file)
    await stop.wait()

"""CPU time and memory of a server process, read from /proc by the orchestrator (Linux; no psutil).

CPU is utime + stime of every thread of the process (grpc core's threads included), in clock ticks (10 ms on
most kernels), so a measurement should last a second or more. Peak RSS is VmHWM, which `reset_peak_rss` sets
back to the current RSS (writing 5 to clear_refs) so that each measurement sees its own peak.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may contain spaces; fields after it are plain.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS_PER_SECOND


def children(pid: int) -> list[int]:
    """Direct child processes of `pid`."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and every descendant still running."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            total += cpu_seconds(current)
            pending.extend(children(current))
    return total


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_bytes(pid: int) -> int:
    """Resident set size now."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """Highest resident set size since start or since the last `reset_peak_rss`."""
    return _status_kib(pid, "VmHWM") * 1024


def tree(pid: int) -> list[int]:
    """The process and every descendant running now."""
    pids = []
    pending = [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            pending.extend(children(current))
    return pids


def reset_peak_rss(pid: int) -> bool:
    """Start a new peak-RSS window; False when the kernel does not allow it (then the peak is since start)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def machine() -> dict[str, str | int]:
    """CPU model, core count and memory of this machine."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return {"cpu_model": model, "cpus": os.cpu_count() or 0, "memory_mib": memory_kib // 1024}


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (how busy the shared machine was)."""
    return os.getloadavg()

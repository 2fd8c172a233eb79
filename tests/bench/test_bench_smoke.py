"""The benchmark harness runs end to end (`python -m bench --quick`): every benchmark, no failed call, JSON written.

Only that it works is checked here; timings are never asserted (they live in bench/ and docs/performance.md).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = (
    "auth_unary",
    "chat_throughput",
    "chat_streams",
    "chat_cancellation",
    "overload",
    "workers",
    "web_face",
    "durable",
)
TIMEOUT_SECONDS = 300.0


async def test_quick_bench_completes_with_no_failed_calls_and_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--output",
        str(output),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_SECONDS)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")[-3000:]
    results = json.loads(output.read_text())
    for name in BENCHMARKS:
        assert results[name]["failed_calls"] == 0, (name, results[name])
    assert results["failed_calls"] == 0
    assert "wire-level fake" in results["dynamodb"]
    assert "failed calls: 0" in out.decode()

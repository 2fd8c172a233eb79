"""The per-event measurements of issue 22 run end to end, small: `bench.stream_path` (the gRPC face's own CPU per
event, in process) and `bench.bedrock` (the Bedrock path against its paced wire-level fake). Only that they run
and that every event arrived is checked; their numbers live in docs/performance.md."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 120.0


async def _run(*args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_SECONDS)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")[-3000:]
    result: dict[str, Any] = json.loads(out)
    return result


async def test_the_stream_path_measures_the_grpc_face_and_the_handler() -> None:
    result = await _run("bench.stream_path", "200", "2")
    assert result["events"] == 200
    assert set(result["cpu_us_per_event"]) == {"handler", "serialize", "grpc_face"}
    assert all(value > 0 for value in result["cpu_us_per_event"].values())


async def test_the_bedrock_path_streams_every_token_through_the_real_client() -> None:
    result = await _run("bench.bedrock", "2", "5", "200", "1")
    for name in ("scripted", "bedrock"):
        (row,) = result["rows"][name]
        assert row["tokens"] == 10, (name, row)
    assert result["rows"]["bedrock"][0]["fake_cpu_us_per_token"] >= 0


async def test_the_bedrock_path_through_the_gateway_streams_every_token() -> None:
    result = await _run("bench.bedrock", "gateway", "2", "5", "200", "1")
    assert result["failed_calls"] == 0
    for name in ("scripted", "bedrock"):
        (row,) = result["rows"][name]
        assert row["tokens"] == 10, (name, row)

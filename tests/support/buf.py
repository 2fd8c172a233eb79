"""Run the buf CLI (installed by `npm ci` from package.json) against a loopback gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.processes import run_to_exit

ROOT = Path(__file__).resolve().parent.parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"


async def buf_curl(target: str, *args: str, data: dict[str, Any] | None = None) -> tuple[int, str, str]:
    """`buf curl --protocol grpc` over plaintext HTTP/2 to `target` ("127.0.0.1:PORT"), using reflection."""
    argv = [str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--timeout", "20s", *args]
    if data is not None:
        argv += ["-d", json.dumps(data)]
    return await run_to_exit(*argv, timeout=60)


def url(target: str, method: str = "") -> str:
    """http://target/method."""
    return f"http://{target}/{method}" if method else f"http://{target}"

"""Run the benchmarks: `python -m bench [--seconds N]` (or `make bench`). Prints ratios, writes JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
from pathlib import Path

import grpc

from bench import auth, chat

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    args = parser.parse_args()
    results = {
        "machine": {
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
            "cpus": os.cpu_count(),
        },
        "auth_unary": asyncio.run(auth.run(args.seconds)),
        "chat": asyncio.run(chat.run(args.seconds)),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    a = results["auth_unary"]
    print(f"{'case':<32}{'calls/s':>12}{'vs bare':>10}")
    print(f"{'bare grpc.aio echo':<32}{a['bare_echo_calls_per_second']:>12}{1.0:>10.3f}")
    print(f"{'gateway, PUBLIC':<32}{a['public_calls_per_second']:>12}{a['ratio_public_vs_bare']:>10.3f}")
    print(
        f"{'gateway, bearer (cached)':<32}{a['authenticated_cached_calls_per_second']:>12}"
        f"{a['ratio_authenticated_vs_bare']:>10.3f}"
    )
    print(
        f"{'gateway, bearer (first sight)':<32}{a['authenticated_first_sight_calls_per_second']:>12}"
        f"{a['ratio_first_sight_vs_bare']:>10.3f}"
    )
    print(f"errors: {a['errors']}   ({a['note']})")
    c = results["chat"]
    cancel = c["cancellation"]
    print(
        f"chat cancel -> turn stopped: p50 {cancel['turn_stopped_p50_ms']} ms, p99 {cancel['turn_stopped_p99_ms']} ms;"
        f" session released: p50 {cancel['session_released_p50_ms']} ms, p99 {cancel['session_released_p99_ms']} ms"
    )
    for row in c["coalescing"]:
        print(
            f"chat {row['streams']:>4} streams: {row['text_messages_sent']} text messages for "
            f"{row['text_deltas_written']} deltas ({row['messages_per_delta']}/delta), "
            f"gap p50 {row['gap_p50_ms']} ms, max {row['gap_max_ms']} ms"
        )
    print(f"written to {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()

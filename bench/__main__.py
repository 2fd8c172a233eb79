"""Run the benchmarks: `python -m bench [--seconds N] [--only NAME]` (or `make bench`). Prints ratios, writes JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
from pathlib import Path
from typing import Any

import grpc

from bench import auth, chat, streams

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    parser.add_argument("--only", choices=["auth", "chat", "streams"], help="run one benchmark only")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
            "cpus": os.cpu_count(),
        },
    }
    if args.only in (None, "auth"):
        results["auth_unary"] = asyncio.run(auth.run(args.seconds))
    if args.only in (None, "chat"):
        results["chat"] = asyncio.run(chat.run(args.seconds))
    if args.only in (None, "streams"):
        results["chat_stream"] = asyncio.run(streams.run(args.seconds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    if "auth_unary" in results:
        print_auth(results["auth_unary"])
    if "chat" in results:
        print_chat(results["chat"])
    if "chat_stream" in results:
        print_streams(results["chat_stream"])
    print(f"written to {RESULTS / 'latest.json'}")


def print_auth(a: dict[str, Any]) -> None:
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


def print_chat(c: dict[str, Any]) -> None:
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


def print_streams(s: dict[str, Any]) -> None:
    print()
    print(f"{'one chat stream':<32}{'events/s':>12}{'CPU µs/event':>14}{'CPU vs grpc':>13}{'rate vs grpc':>14}")
    rows = [("grpc.aio face", "grpc"), ("web face, Connect", "web_connect"), ("web face, gRPC-Web", "web_grpc_web")]
    rows.append(("SSE (comparison)", "sse"))
    for label, key in rows:
        cpu_ratio = 1.0 if key == "grpc" else s[f"cpu_ratio_{key}_vs_grpc"]
        rate_ratio = 1.0 if key == "grpc" else s[f"rate_ratio_{key}_vs_grpc"]
        row = s[key]
        print(
            f"{label:<32}{row['events_per_second']:>12}{row['server_cpu_us_per_event']:>14}"
            f"{cpu_ratio:>13.3f}{rate_ratio:>14.3f}"
        )
    print(f"({s['note']})")


if __name__ == "__main__":
    main()

"""Run every benchmark: `python -m bench [--quick] [--output PATH]` (or `make bench`). Prints a table, writes JSON.

Servers and load generators each run in their own process on loopback; every loop is bounded in count and
time. The full run takes about three minutes, `--quick` well under one (it checks the harness, its numbers mean
little).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench import auth, chat, harness, procfs, workers
from bench.plan import FULL, QUICK, Context, Plan
from tests.support.jwks import SigningKey

RESULTS = Path(__file__).resolve().parent / "results"
DYNAMODB_NOTE = (
    "DynamoDB: the gateway's real aioboto3 client calls a wire-level fake (bench/fakes.py, its own process, "
    "answers at once, stores nothing); the emulator (moto) is not used, so its cost is not measured. "
    "Cognito: never called (chat and unary calls carry no sign-in); bearer keys come from the fake's JWKS."
)
PACKAGES = ("grpcio", "protobuf", "aiohttp", "aioboto3", "aiobotocore", "botocore", "pyjwt")


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "grpc_module": grpc.__version__}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def _web_face_available() -> bool:
    try:
        importlib.import_module("gateway.transport.web")
    except ImportError:
        return False
    return True


async def run(plan: Plan, *, quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {
        "command": "python -m bench" + (" --quick" if quick else ""),
        "machine": {**procfs.machine(), "load_average_before": procfs.load_average()},
        "versions": _versions(),
        "dynamodb": DYNAMODB_NOTE,
        "logging": "off in every benchmarked server (the gateway's access log would be measured otherwise)",
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        key = SigningKey.generate()
        jwks_file = Path(tmp) / "jwks.json"
        jwks_file.write_text(json.dumps({"keys": [key.jwk()]}))
        async with harness.server("bench.fakes", str(jwks_file)) as fake:
            context = Context(key=key, fake_url=f"http://{fake.target}", workdir=Path(tmp))
            steps = (
                ("auth_unary", auth.run),
                ("chat_throughput", chat.throughput),
                ("chat_streams", chat.streams),
                ("chat_cancellation", chat.cancellation),
                ("overload", chat.overload),
                ("workers", workers.run),
            )
            for name, step in steps:
                step_started = time.monotonic()
                print(f"running {name} ...", file=sys.stderr, flush=True)
                results[name] = await step(context, plan)
                results[name]["seconds"] = round(time.monotonic() - step_started, 1)
        results["dynamodb_fake_calls"] = fake.report.get("dynamodb_calls", {})
    if _web_face_available():
        results["web_face"] = {"skipped": "the web face is on this branch but not benchmarked yet"}
    else:
        results["web_face"] = {"skipped": "the web face (gateway.transport.web) is not on this branch yet"}
    results["machine"]["load_average_after"] = procfs.load_average()
    results["seconds"] = round(time.monotonic() - started, 1)
    results["failed_calls"] = sum(
        int(results[name].get("failed_calls", 0))
        for name in ("auth_unary", "chat_throughput", "chat_streams", "chat_cancellation", "overload", "workers")
    )
    return results


def _ms(summary: dict[str, float]) -> str:
    return f"{summary['p50']:.1f} / {summary['p99']:.1f}"


def report(r: dict[str, Any]) -> str:
    """The results as a plain-text table."""
    lines: list[str] = []
    add = lines.append
    m = r["machine"]
    add(f"{m['cpus']} CPUs ({m['cpu_model']}), {m['memory_mib']} MiB; load average before {m['load_average_before']}")
    add(r["dynamodb"])
    a = r["auth_unary"]
    add("")
    add(f"1. unary RPC, {a['concurrency']} in flight          calls/s   vs bare   server CPU µs/call")
    cpu = a["server_cpu_us_per_call"]
    for label, rate, ratio, per_call in (
        ("bare grpc.aio echo", a["bare_echo_calls_per_second"], 1.0, cpu["bare"]),
        ("gateway, PUBLIC", a["public_calls_per_second"], a["ratio_public_vs_bare"], cpu["public"]),
        (
            "gateway, bearer (cached)",
            a["authenticated_cached_calls_per_second"],
            a["ratio_authenticated_vs_bare"],
            cpu["authenticated_cached"],
        ),
        (
            "gateway, bearer (first sight)",
            a["authenticated_first_sight_calls_per_second"],
            a["ratio_first_sight_vs_bare"],
            cpu["authenticated_first_sight"],
        ),
    ):
        add(f"   {label:<34}{rate:>9.0f}{ratio:>10.3f}{per_call:>12.0f}")
    add(f"   cached/bare by round: {a['ratios_authenticated_vs_bare_by_round']}  (goal >= 0.95)")
    t = r["chat_throughput"]
    add("")
    add("2. one Chat stream, model as fast as it can   chars/s   msgs/s  chars/msg  CPU ms/1k chars  server%  client%")
    for kind, label in (("gateway", "gateway (coalescing)"), ("bare", "bare grpc.aio, msg/token"), ("sse", "SSE")):
        row = t["servers"][kind]
        add(
            f"   {label:<40}{row['chars_per_second']:>10}{row['messages_per_second']:>9}{row['chars_per_message']:>10}"
            f"{row['server_cpu_ms_per_1000_chars']:>16.3f}{row['server_cpu_percent']:>8}{row['client_cpu_percent']:>9}"
        )
    add(
        f"   gateway vs SSE: {t['ratio_chars_per_second_gateway_vs_sse']}x chars/s, "
        f"{t['ratio_cpu_per_char_gateway_vs_sse']}x CPU per char (goal: > 1 and < 1); vs bare: "
        f"{t['ratio_chars_per_second_gateway_vs_bare']}x chars/s, {t['ratio_cpu_per_char_gateway_vs_bare']}x CPU/char"
    )
    s = r["chat_streams"]
    add("")
    add(
        f"3. concurrent Chat streams, {s['rate_tokens_per_second']:g} tokens/s each for {s['stream_seconds']:g} s, "
        f"starts over {s['spread_seconds']:g} s; goal: {s['goal']}"
    )
    add("   server   streams  failed  first event p50/p99 ms  token delay p50/p99 ms  RSS KiB/stream  server%  client%")
    for kind in ("gateway", "bare"):
        for row in s["steps"][kind]:
            add(
                f"   {kind:<9}{row['streams']:>7}{row['failed_streams']:>8}{_ms(row['first_event_ms']):>24}"
                f"{_ms(row['delta_delay_ms']):>24}{row['peak_rss_kib_per_stream']:>16}{row['server_cpu_percent']:>9}"
                f"{row['client_cpu_percent']:>9}{'' if row['held'] else '  (not held)'}"
            )
    add(f"   held: gateway {s['held_streams']['gateway']}, bare {s['held_streams']['bare']} (goal 1000)")
    c = r["chat_cancellation"]
    add("")
    add("4. cancellation mid-turn, ms from the client's cancel (p50 / p99)   model stream closed   turn tasks gone")
    for kind in ("gateway", "bare"):
        row = c["servers"][kind]
        add(
            f"   {kind:<9}{row['trials']:>5} trials{_ms(row['model_stream_closed_ms']):>44}"
            f"{_ms(row['turn_tasks_gone_ms']):>18}   leftover tasks {row['leftover_tasks']}"
        )
    o = r["overload"]
    add("")
    add(f"5. overload: limit {o['limit']} streams held, new calls meanwhile")
    for kind in ("gateway", "bare"):
        row = o["servers"][kind]
        add(
            f"   {kind:<9}new calls {row['extra_outcomes']}, refused after p50/p99 {_ms(row['refusal_ms'])} ms; "
            f"health p50/p99 idle {_ms(row['health_idle_ms'])} ms, overloaded {_ms(row['health_overloaded_ms'])} ms, "
            f"health failures {row['health_failures']}"
        )
    w = r["workers"]
    add("")
    add(
        f"6. gateway serve --workers: 1 worker {w['one_worker']['calls_per_second']:.0f} calls/s, "
        f"2 workers {w['two_workers']['calls_per_second']:.0f} calls/s ({w['ratio_two_vs_one']}x); "
        f"CPU s per worker {w['two_workers']['worker_cpu_seconds']}"
    )
    add("")
    add(f"7. web face: {r['web_face'].get('skipped', 'see JSON')}")
    add("")
    add(f"failed calls: {r['failed_calls']}; {r['seconds']} s; load average after {m['load_average_after']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny durations: checks the harness, not the gateway")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json", help="where the JSON goes")
    args = parser.parse_args()
    results = asyncio.run(run(QUICK if args.quick else FULL, quick=args.quick))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(report(results))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()

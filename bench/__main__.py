"""Run the benchmarks: `python -m bench [--quick] [--only NAMES] [--output PATH]` (or `make bench`).

Prints a table with ratios and writes the results as JSON (bench/results/latest.json by default).

Servers and load generators each run in their own process on loopback; every loop is bounded in count and
time. The full run takes about nine minutes, `--quick` under one (it checks the harness; its
numbers mean little). docs/performance.md explains what is measured and how, and reads the results.
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
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from bench import auth, chat, harness, procfs, streams, workers
from bench.plan import FULL, QUICK, Context, Plan
from gateway.testing import SigningKey

RESULTS = Path(__file__).resolve().parent / "results"
DYNAMODB_NOTE = (
    "DynamoDB: the gateway's real aioboto3 client calls a wire-level fake (bench/fakes.py, its own process, "
    "answers at once, stores nothing); the emulator (moto) is not used, so its cost is not measured. "
    "Cognito: never called (chat and unary calls carry no sign-in); bearer keys come from the fake's JWKS."
)
PACKAGES = (
    "grpcio",
    "protobuf",
    "aiohttp",
    "aioboto3",
    "aiobotocore",
    "botocore",
    "pyjwt",
    "connectrpc",
    "uvicorn",
    "starlette",
)


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "grpc_module": grpc.__version__}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


async def web_face(context: Context, plan: Plan) -> dict[str, Any]:
    """7. One chat stream's events on the web face (Connect, gRPC-Web) vs the gRPC face vs SSE (bench/streams.py)."""
    result = await streams.run(plan.web_seconds, plan.web_events)
    # bench.streams checks that every event of every stream arrived, and stops the run if one did not.
    result["failed_calls"] = 0
    return result


async def durable(context: Context, plan: Plan) -> dict[str, Any]:
    """8. Durable turns: keep_running against plain, table writes, resumes, CancelTurn elsewhere (bench/durable.py)."""
    output = context.workdir / "durable.json"
    trials = str(plan.durable_trials)
    result = await harness.client(
        "bench.durable", "--trials", trials, "--output", str(output), limit_seconds=600, output=output
    )
    # Every turn of bench.durable must end as asked, or it stops with an error (and so does this run).
    result["failed_calls"] = 0
    return result


BENCHMARKS: dict[str, Callable[[Context, Plan], Awaitable[dict[str, Any]]]] = {
    "auth_unary": auth.run,
    "chat_throughput": chat.throughput,
    "chat_streams": chat.streams,
    "chat_cancellation": chat.cancellation,
    "overload": chat.overload,
    "workers": workers.run,
    "web_face": web_face,
    "durable": durable,
}


async def run(plan: Plan, *, command: str, only: Sequence[str] = ()) -> dict[str, Any]:
    """Run the benchmarks (all, or those named in `only`) and return their results."""
    results: dict[str, Any] = {
        "command": command,
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
            context = Context(
                key=key,
                fake_url=f"http://{fake.target}",
                fake_pid=fake.pid,
                workdir=Path(tmp),
            )
            for name, benchmark in BENCHMARKS.items():
                if only and name not in only:
                    continue
                benchmark_started = time.monotonic()
                print(f"running {name} ...", file=sys.stderr, flush=True)
                results[name] = await benchmark(context, plan)
                results[name]["seconds"] = round(time.monotonic() - benchmark_started, 1)
        results["dynamodb_fake_calls"] = fake.report.get("dynamodb_calls", {})
    results["machine"]["load_average_after"] = procfs.load_average()
    results["seconds"] = round(time.monotonic() - started, 1)
    results["failed_calls"] = sum(int(results[name]["failed_calls"]) for name in BENCHMARKS if name in results)
    return results


def _ms(summary: dict[str, float]) -> str:
    return f"{summary['p50']:.1f} / {summary['p99']:.1f}"


def _auth(a: dict[str, Any]) -> list[str]:
    cpu = a["server_cpu_us_per_call"]
    lines = [
        f"1. unary RPC, {a['concurrency']} in flight, {a['rounds']} rounds  calls/s   vs bare   server CPU µs/call",
        "   (calls/s: medians of the rounds; vs bare: the median of the rounds' own ratios)",
    ]
    for label, rate, ratio, per_call in (
        ("bare grpc.aio echo", a["bare_echo_calls_per_second"], 1.0, cpu["bare"]),
        (
            "bare echo, same bearer header",
            a["bare_echo_with_header_calls_per_second"],
            a["ratio_bare_with_header_vs_bare"],
            cpu["bare_with_header"],
        ),
        (
            "gateway, PUBLIC, no metrics",
            a["public_no_metrics_calls_per_second"],
            a["ratio_public_no_metrics_vs_bare"],
            cpu["public_no_metrics"],
        ),
        ("gateway, PUBLIC", a["public_calls_per_second"], a["ratio_public_vs_bare"], cpu["public"]),
        (
            "gateway, bearer (cached)",
            a["authenticated_cached_calls_per_second"],
            a["ratio_authenticated_vs_bare"],
            cpu["authenticated_cached"],
        ),
        ("bare echo on uvloop", a["bare_uvloop_calls_per_second"], a["ratio_bare_uvloop_vs_bare"], cpu["bare_uvloop"]),
        (
            "gateway on uvloop, bearer (cached)",
            a["authenticated_cached_uvloop_calls_per_second"],
            a["ratio_authenticated_uvloop_vs_bare"],
            cpu["authenticated_cached_uvloop"],
        ),
        (
            "gateway, bearer (first sight)",
            a["authenticated_first_sight_calls_per_second"],
            a["ratio_first_sight_vs_bare"],
            cpu["authenticated_first_sight"],
        ),
    ):
        lines.append(f"   {label:<34}{rate:>9.0f}{ratio:>10.3f}{per_call:>12.0f}")
    lines.append(f"   cached/bare by round: {a['ratios_authenticated_vs_bare_by_round']}  (goal >= 0.95)")
    lines.append(f"   cached/bare as a ratio of the medians: {a['ratio_of_medians_authenticated_vs_bare']:.3f}")
    lines.append(f"   cached vs the bare echo sent the same header: {a['ratio_authenticated_vs_bare_with_header']:.3f}")
    lines.append(
        f"   on uvloop, cached vs the bare echo on uvloop: {a['ratio_authenticated_uvloop_vs_bare_uvloop']:.3f}"
    )
    return lines


def _throughput(t: dict[str, Any]) -> list[str]:
    lines = [
        "2. one Chat stream, model as fast as it can   chars/s   msgs/s  chars/msg  CPU ms/1k chars  server%  client%"
    ]
    for kind, label in (
        ("gateway", "gateway gRPC face (coalescing)"),
        ("gateway_web", "gateway web face, Connect (coalescing)"),
        ("bare", "bare grpc.aio, msg/token"),
        ("sse", "SSE"),
    ):
        row = t["servers"][kind]
        lines.append(
            f"   {label:<40}{row['chars_per_second']:>10}{row['messages_per_second']:>9}{row['chars_per_message']:>10}"
            f"{row['server_cpu_ms_per_1000_chars']:>16.3f}{row['server_cpu_percent']:>8}{row['client_cpu_percent']:>9}"
        )
    lines.append(
        f"   gateway vs SSE: {t['ratio_chars_per_second_gateway_vs_sse']}x chars/s, "
        f"{t['ratio_cpu_per_char_gateway_vs_sse']}x CPU per char (goal: > 1 and < 1); vs bare: "
        f"{t['ratio_chars_per_second_gateway_vs_bare']}x chars/s, {t['ratio_cpu_per_char_gateway_vs_bare']}x CPU/char"
    )
    lines.append(
        f"   web face vs SSE: {t['ratio_chars_per_second_web_face_vs_sse']}x chars/s, "
        f"{t['ratio_cpu_per_char_web_face_vs_sse']}x CPU per char"
    )
    lines.append(
        "   by round, chars/s: "
        + ", ".join(f"{kind} {row['chars_per_second_by_round']}" for kind, row in t["servers"].items())
    )
    return lines


def _streams(s: dict[str, Any]) -> list[str]:
    lines = [
        f"3. concurrent Chat streams, {s['rate_tokens_per_second']:g} tokens/s each for {s['stream_seconds']:g} s, "
        f"starts over {s['spread_seconds']:g} s; goal: {s['goal']}",
        "   server          streams  failed  at once  first event p50/p99 ms  first text p99 ms"
        "  token delay p50/p99 ms  RSS KiB/stream  server% µs/token  client%",
    ]
    for kind in s["steps"]:
        for row in s["steps"][kind]:
            lines.append(
                f"   {kind:<16}{row['streams']:>7}{row['failed_streams']:>8}{row.get('peak_streaming', 0):>9}"
                f"{_ms(row['first_event_ms']):>24}{row['first_text_ms']['p99']:>19.1f}"
                f"{_ms(row['delta_delay_ms']):>24}{row['peak_rss_kib_per_stream']:>16}{row['server_cpu_percent']:>9}"
                f"{row['server_cpu_us_per_token']:>9}{row['client_cpu_percent']:>9}"
                f"{'' if row['held'] else '  (not held)'}"
            )
    held = ", ".join(f"{kind} {count}" for kind, count in s["held_streams"].items())
    lines.append(
        f"   held: {held} (goal: gateway 500, gateway_2 1000; gateway_2 = two gateway processes on the port, as "
        "--workers 2; gateway_bedrock = the Bedrock model reading bench.bedrock's paced fake endpoint)"
    )
    return lines


def _cancellation(c: dict[str, Any]) -> list[str]:
    lines = [
        "4. cancellation mid-turn, ms from the client's cancel (p50 / p99)   model stream closed   turn tasks gone"
    ]
    for kind in ("gateway", "bare"):
        row = c["servers"][kind]
        lines.append(
            f"   {kind:<9}{row['trials']:>5} trials{_ms(row['model_stream_closed_ms']):>44}"
            f"{_ms(row['turn_tasks_gone_ms']):>18}   leftover tasks {row['leftover_tasks']}"
        )
    return lines


def _overload(o: dict[str, Any]) -> list[str]:
    lines = [f"5. overload: limit {o['limit']} streams held, new calls meanwhile"]
    for kind in ("gateway", "bare"):
        row = o["servers"][kind]
        lines.append(
            f"   {kind:<9}new calls {row['extra_outcomes']}, refused after p50/p99 {_ms(row['refusal_ms'])} ms; "
            f"health p50/p99 idle {_ms(row['health_idle_ms'])} ms, overloaded {_ms(row['health_overloaded_ms'])} ms, "
            f"health failures {row['health_failures']}"
        )
    return lines


def _workers(w: dict[str, Any]) -> list[str]:
    one, two = w["one_worker"], w["two_workers"]
    return [
        f"6. gateway serve --workers: 1 worker {one['calls_per_second']:.0f} calls/s, "
        f"2 workers {two['calls_per_second']:.0f} calls/s ({w['ratio_two_vs_one']}x); "
        f"CPU s per worker: 1 worker {one['worker_cpu_seconds']}, 2 workers {two['worker_cpu_seconds']}; "
        f"DynamoDB fake CPU {one['fake_cpu_percent']} % / {two['fake_cpu_percent']} %",
        f"   2 vs 1 by round: {w['ratios_two_vs_one_by_round']}",
    ]


def _web(s: dict[str, Any]) -> list[str]:
    lines = [
        f"7. one chat stream of {s['events_per_stream']} ready-made events, per face     events/s  server CPU µs/event"
        "  CPU vs gRPC face"
    ]
    for key, label in (
        ("grpc", "gRPC face"),
        ("bare", "bare grpc.aio (the same events, no pipeline)"),
        ("web_connect", "web face, Connect"),
        ("web_grpc_web", "web face, gRPC-Web"),
        ("sse", "SSE (comparison)"),
    ):
        if key not in s:  # results from before the bare row
            continue
        ratio = 1.0 if key == "grpc" else s[f"cpu_ratio_{key}_vs_grpc"]
        row = s[key]
        lines.append(
            f"   {label:<58}{row['events_per_second']:>10.0f}{row['server_cpu_us_per_event']:>20}{ratio:>18.3f}"
        )
    return lines


def _durable(d: dict[str, Any]) -> list[str]:
    cpu, writes, resume = d["cpu_us_per_event"], d["writes_500_delta_reply"], d["resume_latency"]
    cancel = d["cancel_other_replica_to_model_closed"]
    return [
        "8. durable turns, two replicas over the emulator (client and moto in the process: CPU includes them)",
        f"   CPU per event, keep_running vs plain: {cpu['ratio_kept_vs_plain']:.3f}x  (goal <= 1.10)",
        f"   table writes of a {writes['deltas_from_model']}-delta reply over {writes['duration_seconds']} s: "
        f"{writes['table_writes']}  (goal <= {writes['goal_at_most']})",
        f"   ResumeChat to the first missed event, p50 / p95 ms: same replica {resume['same_replica']['p50_ms']} / "
        f"{resume['same_replica']['p95_ms']}, other replica {resume['other_replica']['p50_ms']} / "
        f"{resume['other_replica']['p95_ms']}  (goal p95 <= 300 on the other)",
        f"   CancelTurn on the other replica to the model's stream closed, p50 / p99 ms: {cancel['p50_ms']} / "
        f"{cancel['p99_ms']}  (goal <= 1000)",
    ]


SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "auth_unary": _auth,
    "chat_throughput": _throughput,
    "chat_streams": _streams,
    "chat_cancellation": _cancellation,
    "overload": _overload,
    "workers": _workers,
    "web_face": _web,
    "durable": _durable,
}


def report(r: dict[str, Any]) -> str:
    """The results as a plain-text table."""
    m = r["machine"]
    lines = [
        f"{m['cpus']} CPUs ({m['cpu_model']}), {m['memory_mib']} MiB; load average before {m['load_average_before']}",
        r["dynamodb"],
    ]
    for name, section in SECTIONS.items():
        if name in r:
            lines += ["", *section(r[name])]
    lines += [
        "",
        f"failed calls: {r['failed_calls']}; {r['seconds']} s; load average after {m['load_average_after']}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny durations: checks the harness, not the gateway")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json", help="where the JSON goes")
    parser.add_argument(
        "--only", default="", help=f"comma-separated benchmarks to run (default all: {','.join(BENCHMARKS)})"
    )
    args = parser.parse_args()
    only = [name for name in args.only.split(",") if name]
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    command = " ".join(["python -m bench", *sys.argv[1:]])
    plan = QUICK if args.quick else FULL
    results = asyncio.run(run(plan, command=command, only=only))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(report(results))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()

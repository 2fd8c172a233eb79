"""Render a results file as the Markdown tables of docs/performance.md: `python -m bench.markdown RESULTS.json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _ms(summary: dict[str, float]) -> str:
    return f"{summary['p50']:.1f} / {summary['p99']:.1f}"


def render(r: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    if "auth_unary" in r:
        a = r["auth_unary"]
        cpu = a["server_cpu_us_per_call"]
        add(
            f"**1. Unary RPC** ({a['concurrency']} calls in flight, 64-byte messages, {a['rounds']} rounds of "
            f"{a.get('seconds_per_measurement', 2.0):g} s per row; calls/s: medians; vs bare: the median of the "
            "rounds' own ratios)"
        )
        add("")
        add("| server | calls/s | vs bare | server CPU µs/call |")
        add("| --- | ---: | ---: | ---: |")
        add(f"| bare grpc.aio echo | {a['bare_echo_calls_per_second']:.0f} | 1.000 | {cpu['bare']:.0f} |")
        header_rate = a["bare_echo_with_header_calls_per_second"]
        add(
            f"| bare echo, sent the same bearer header (ignored) | {header_rate:.0f} "
            f"| {a.get('ratio_bare_with_header_vs_bare', header_rate / a['bare_echo_calls_per_second']):.3f} "
            f"| {cpu['bare_with_header']:.0f} |"
        )
        if "public_no_metrics_calls_per_second" in a:
            add(
                f"| gateway, PUBLIC, without metrics (a ladder step) | {a['public_no_metrics_calls_per_second']:.0f} "
                f"| {a['ratio_public_no_metrics_vs_bare']:.3f} | {cpu['public_no_metrics']:.0f} |"
            )
        add(
            f"| gateway, PUBLIC | {a['public_calls_per_second']:.0f} | {a['ratio_public_vs_bare']:.3f} "
            f"| {cpu['public']:.0f} |"
        )
        add(
            f"| gateway, bearer verified once (cached) | {a['authenticated_cached_calls_per_second']:.0f} "
            f"| **{a['ratio_authenticated_vs_bare']:.3f}** | {cpu['authenticated_cached']:.0f} |"
        )
        add(
            f"| gateway, bearer first sight (new token each call) | "
            f"{a['authenticated_first_sight_calls_per_second']:.0f} | {a['ratio_first_sight_vs_bare']:.3f} "
            f"| {cpu['authenticated_first_sight']:.0f} |"
        )
        add("")
        of_medians = a.get("ratio_of_medians_authenticated_vs_bare")
        add(
            f"Cached vs bare, round by round: {a['ratios_authenticated_vs_bare_by_round']}"
            + (f" (as a ratio of the medians: {of_medians:.3f})" if of_medians is not None else "")
            + f". Cached vs the bare echo sent the same header: {a['ratio_authenticated_vs_bare_with_header']:.3f}."
        )
        add("")
    if "chat_throughput" in r:
        t = r["chat_throughput"]
        add(f"**2. One Chat stream, a model writing as fast as it can** (turns of {t['tokens_per_turn']} tokens)")
        add("")
        add(
            "| server | chars/s | messages/s | chars/message | server CPU ms per 1,000 chars | server CPU "
            "| client CPU |"
        )
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for kind, label in (
            ("gateway", "gateway, gRPC face (coalescing)"),
            ("gateway_web", "gateway, web face: Connect (coalescing)"),
            ("bare", "bare grpc.aio, a message per token"),
            ("sse", "SSE (aiohttp), an event per token"),
        ):
            row = t["servers"][kind]
            add(
                f"| {label} | {row['chars_per_second']} | {row['messages_per_second']} | {row['chars_per_message']} "
                f"| {row['server_cpu_ms_per_1000_chars']:.2f} | {row['server_cpu_percent']} % "
                f"| {row['client_cpu_percent']} % |"
            )
        add("")
        add(
            f"Gateway vs SSE: **{t['ratio_chars_per_second_gateway_vs_sse']}x** the text per second, "
            f"**{t['ratio_cpu_per_char_gateway_vs_sse']}x** the server CPU per character. Gateway vs bare: "
            f"{t['ratio_chars_per_second_gateway_vs_bare']}x the text per second, "
            f"{t['ratio_cpu_per_char_gateway_vs_bare']}x the CPU per character. Chars/s round by round: "
            + "; ".join(f"{k} {row['chars_per_second_by_round']}" for k, row in t["servers"].items())
            + f". The web face vs SSE: {t['ratio_chars_per_second_web_face_vs_sse']}x the text per second, "
            f"{t['ratio_cpu_per_char_web_face_vs_sse']}x the CPU per character."
        )
        add("")
    if "chat_streams" in r:
        s = r["chat_streams"]
        add(
            f"**3. Concurrent Chat streams** ({s['rate_tokens_per_second']:g} tokens/s each for "
            f"{s['stream_seconds']:g} s, starts spread over {s['spread_seconds']:g} s; held = {s['goal']})"
        )
        add("")
        add(
            "| server | streams | failed | streaming at once | first event p50 / p99 ms | first text p99 ms "
            "| token delay p50 / p99 ms "
            "| peak RSS KiB/stream | server CPU | server CPU µs/token | client CPU | held |"
        )
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        names = {
            "gateway": "gateway",
            "gateway_2": "gateway, 2 processes",
            "bare": "bare",
            "gateway_bedrock": "gateway, Bedrock model (paced fake endpoint)",
        }
        for kind in s["steps"]:
            for row in s["steps"][kind]:
                add(
                    f"| {names.get(kind, kind)} | {row['streams']} | {row['failed_streams']} "
                    f"| {row.get('peak_streaming', '-')} | {_ms(row['first_event_ms'])} "
                    f"| {row['first_text_ms']['p99'] if 'first_text_ms' in row else '-'} "
                    f"| {_ms(row['delta_delay_ms'])} | {row['peak_rss_kib_per_stream']} "
                    f"| {row['server_cpu_percent']} % "
                    f"| {row['server_cpu_us_per_token']} | {row['client_cpu_percent']} % "
                    f"| {'yes' if row['held'] else '**no**'} |"
                )
        add("")
    if "chat_cancellation" in r:
        c = r["chat_cancellation"]
        add("**4. Cancellation mid-turn** (ms from the client's cancel, p50 / p99)")
        add("")
        add("| server | trials | model stream closed | task running the model done | every task of the turn gone |")
        add("| --- | ---: | ---: | ---: | ---: |")
        for kind in ("gateway", "bare"):
            row = c["servers"][kind]
            add(
                f"| {kind} | {row['trials']} | {_ms(row['model_stream_closed_ms'])} | "
                f"{_ms(row['model_task_done_ms'])} | {_ms(row['turn_tasks_gone_ms'])} |"
            )
        add("")
    if "overload" in r:
        o = r["overload"]
        add(f"**5. Overload** (limit {o['limit']}, as many paced streams held, new Chat calls and health checks)")
        add("")
        add(
            "| server | new calls: outcome | refused after p50 / p99 ms | health idle p50 / p99 ms "
            "| health overloaded p50 / p99 ms | health checks refused |"
        )
        add("| --- | --- | ---: | ---: | ---: | ---: |")
        for kind in ("gateway", "bare"):
            row = o["servers"][kind]
            outcomes = ", ".join(f"{n} {code}" for code, n in row["extra_outcomes"].items())
            add(
                f"| {kind} | {outcomes} | {_ms(row['refusal_ms'])} | {_ms(row['health_idle_ms'])} "
                f"| {_ms(row['health_overloaded_ms'])} | {row['health_failures']} |"
            )
        add("")
    if "workers" in r:
        w = r["workers"]
        add("**6. `gateway serve --workers`** (authenticated ListReservations, the same load)")
        add("")
        add("| workers | calls/s | CPU seconds per worker | client CPU | DynamoDB fake CPU |")
        add("| ---: | ---: | --- | ---: | ---: |")
        for row in (w["one_worker"], w["two_workers"]):
            add(
                f"| {row['workers']} | {row['calls_per_second']:.0f} | {row['worker_cpu_seconds']} "
                f"| {row['client_cpu_percent']} % | {row['fake_cpu_percent']} % |"
            )
        add("")
        add(f"2 workers vs 1: **{w['ratio_two_vs_one']}x** (round by round: {w['ratios_two_vs_one_by_round']}).")
        add("")
    if "web_face" in r:
        web = r["web_face"]
        add(
            f"**7. The web face** (one chat stream of {web['events_per_stream']} ready-made text events, no model and "
            "no coalescing: the transports alone, `bench/streams.py`)"
        )
        add("")
        add("| face | events/s | server CPU µs/event | CPU vs gRPC face |")
        add("| --- | ---: | ---: | ---: |")
        for key, label in (
            ("grpc", "gRPC face (grpc.aio)"),
            ("bare", "bare grpc.aio server, the same events"),
            ("web_connect", "web face, Connect"),
            ("web_grpc_web", "web face, gRPC-Web"),
            ("sse", "SSE (uvicorn, json per event)"),
        ):
            if key not in web:  # results from before the bare row
                continue
            ratio = 1.0 if key == "grpc" else web[f"cpu_ratio_{key}_vs_grpc"]
            row = web[key]
            add(f"| {label} | {row['events_per_second']:.0f} | {row['server_cpu_us_per_event']} | {ratio:.3f} |")
        add("")
    if "durable" in r:
        d = r["durable"]
        writes, resume = d["writes_500_delta_reply"], d["resume_latency"]
        cancel = d["cancel_other_replica_to_model_closed"]
        add("**8. Durable turns** (two replicas over the emulator, `bench/durable.py`; CPU includes client and moto)")
        add("")
        add("| measure | result | goal |")
        add("| --- | --- | --- |")
        add(f"| CPU per event, keep_running / plain | {d['cpu_us_per_event']['ratio_kept_vs_plain']:.3f}x | ≤ 1.10x |")
        add(
            f"| table writes, {writes['deltas_from_model']}-delta reply over {writes['duration_seconds']} s "
            f"| {writes['table_writes']} | ≤ {writes['goal_at_most']} |"
        )
        for where in ("same_replica", "other_replica"):
            row = resume[where]
            goal = "p95 ≤ 300 ms" if where == "other_replica" else ""
            add(f"| ResumeChat, {where.replace('_', ' ')} | p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms | {goal} |")
        add(f"| CancelTurn elsewhere → model closed | p50 {cancel['p50_ms']} ms, p99 {cancel['p99_ms']} ms | ≤ 1 s |")
        add("")
    return "\n".join(out)


def main() -> None:
    print(render(json.loads(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    main()

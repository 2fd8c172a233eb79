"""6. `gateway serve --workers 1` vs `--workers 2` under the same load, in the same run.

The real command, as an operator runs it, configured for the wire fake (DynamoDB, and the JWKS of the
benchmark's signing key) instead of AWS. The load is authenticated `ListReservations` calls (bearer verified
once and cached, one DynamoDB query each) from several channels that do not share a connection: SO_REUSEPORT
spreads connections, not calls, over the workers. Each worker's CPU is read from /proc to show the spread.
"""

from __future__ import annotations

from typing import Any

from bench import harness, procfs
from bench.plan import Context, Plan
from gateway.testing import CLIENT_ID, ISSUER, access_claims, mint

METHOD = "/booking.v1.ReservationService/ListReservations"


def _environment(context: Context) -> dict[str, str]:
    return {
        "GATEWAY_AWS_ENDPOINT_URL": context.fake_url,
        "GATEWAY_AWS_REGION": "us-east-1",
        # A user pool is configured, so `serve` starts no emulator; Cognito is never called by this load.
        "GATEWAY_USER_POOL_ID": "us-east-1_BenchPool",
        "GATEWAY_APP_CLIENT_ID": CLIENT_ID,
        "GATEWAY_ISSUER": ISSUER,
        "GATEWAY_JWKS_URL": context.jwks_url,
        "GATEWAY_TABLE_NAME": "bench",
        "GATEWAY_LOG_LEVEL": "WARNING",
        # Both faces are served, as by default; the web face on a port picked at start (idle here).
        "GATEWAY_WEB_LISTEN": "127.0.0.1:0",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }


async def _measure(context: Context, plan: Plan, server: harness.Server, workers: int) -> dict[str, Any]:
    token_file = context.workdir / "workers-token"
    token_file.write_text(mint(context.key, access_claims(iss=ISSUER, client_id=CLIENT_ID)))
    children = procfs.children(server.pid) if workers > 1 else [server.pid]
    before = {pid: procfs.cpu_seconds(pid) for pid in children}
    fake_before = procfs.cpu_seconds(context.fake_pid)
    result = await harness.client(
        "bench.load",
        server.target,
        METHOD,
        str(plan.workers_concurrency),
        str(plan.workers_seconds),
        "--tokens",
        str(token_file),
        "--channels",
        str(plan.workers_channels),
        "--request-hex",
        "",
        limit_seconds=plan.workers_seconds + 60,
    )
    per_worker = [round(procfs.cpu_seconds(pid) - before[pid], 2) for pid in children]
    fake_used = procfs.cpu_seconds(context.fake_pid) - fake_before
    return {
        "workers": workers,
        "calls_per_second": round(result["calls_per_second"], 1),
        "failed_calls": int(result["errors"]),
        "worker_cpu_seconds": per_worker,
        "client_cpu_percent": round(result["client_cpu_seconds"] / result["seconds"] * 100),
        "fake_cpu_percent": round(fake_used / result["seconds"] * 100),
    }


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(rounds, key=lambda row: row["calls_per_second"])
    return {
        **ordered[len(ordered) // 2],
        "calls_per_second_by_round": [row["calls_per_second"] for row in rounds],
        "failed_calls": sum(row["failed_calls"] for row in rounds),
    }


async def run(context: Context, plan: Plan) -> dict[str, Any]:
    """Both gateways run side by side (idle but for the one measured), measured in turn `Plan.rounds` times."""
    env = _environment(context)
    ones: list[dict[str, Any]] = []
    twos: list[dict[str, Any]] = []
    async with (
        harness.gateway_serve("--workers", "1", env=env) as single,
        harness.gateway_serve("--workers", "2", env=env) as double,
    ):
        for _ in range(plan.rounds):
            ones.append(await _measure(context, plan, single, 1))
            twos.append(await _measure(context, plan, double, 2))
    one, two = _median(ones), _median(twos)
    return {
        "note": "`gateway serve --workers N` (the real command) over the wire fake; authenticated ListReservations "
        f"from {plan.workers_channels} connections, {plan.workers_concurrency} calls in flight on each",
        "rounds": plan.rounds,
        "one_worker": one,
        "two_workers": two,
        "ratio_two_vs_one": round(two["calls_per_second"] / one["calls_per_second"], 2),
        "ratios_two_vs_one_by_round": [
            round(b["calls_per_second"] / a["calls_per_second"], 2) for a, b in zip(ones, twos, strict=True)
        ],
        "failed_calls": one["failed_calls"] + two["failed_calls"],
    }

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
from tests.support.jwks import CLIENT_ID, ISSUER, access_claims, mint

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
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }


async def _measure(context: Context, plan: Plan, workers: int) -> dict[str, Any]:
    token_file = context.workdir / "workers-token"
    token_file.write_text(mint(context.key, access_claims(iss=ISSUER, client_id=CLIENT_ID)))
    async with harness.gateway_serve("--workers", str(workers), env=_environment(context)) as server:
        children = procfs.children(server.pid) if workers > 1 else [server.pid]
        before = {pid: procfs.cpu_seconds(pid) for pid in children}
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
    return {
        "workers": workers,
        "calls_per_second": round(result["calls_per_second"], 1),
        "failed_calls": int(result["errors"]),
        "worker_cpu_seconds": per_worker,
        "client_cpu_percent": round(result["client_cpu_seconds"] / result["seconds"] * 100),
    }


async def run(context: Context, plan: Plan) -> dict[str, Any]:
    one = await _measure(context, plan, 1)
    two = await _measure(context, plan, 2)
    return {
        "note": "`gateway serve --workers N` (the real command) over the wire fake; authenticated ListReservations "
        f"from {plan.workers_channels} connections, {plan.workers_concurrency} calls in flight on each",
        "one_worker": one,
        "two_workers": two,
        "ratio_two_vs_one": round(two["calls_per_second"] / one["calls_per_second"], 2),
        "failed_calls": one["failed_calls"] + two["failed_calls"],
    }

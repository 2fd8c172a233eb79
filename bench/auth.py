"""1. Authenticated unary RPC vs the same RPC PUBLIC vs a bare grpc.aio echo, in one run.

The echo is served from a handler table by the production GatewayServer (GrpcFace, the call pipeline,
Authenticator, CognitoBearerVerifier and JwksCache; `bench.servers`), once as the gateway runs (metrics on) and
once without metrics (a step of the ladder); the bare echo has no pipeline; each in its own process, 62-byte
messages, 32 calls in flight from a load generator in another process. The machine's speed drifts by tens of
percent from one second to the next (other tenants of the host), so the rows are measured in
`Plan.unary_rounds` short rounds, each measuring every row back to back (in reverse order every other round, so
that a steady drift hits both ends alike), and the headline ratio is the median of the rounds' own ratios; the
medians of the rates are reported too.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench import harness
from bench.plan import Context, Plan
from bench.servers import PUBLIC_METHOD, REQUIRED_METHOD
from gateway.testing import CLIENT_ID, ISSUER, access_claims, mint

CONCURRENCY = 32
NOTE = (
    "echo RPC behind the real GrpcFace + CognitoBearerVerifier (JWKS from the loopback fake); "
    "DynamoDB off the hot path (revocations are polled in the background; in-memory store here)"
)


async def _load(
    server: harness.Server, method: str, seconds: float, token_file: Path | None = None
) -> tuple[dict[str, Any], float]:
    """The load generator's result and the server CPU microseconds per call."""
    args = [server.target, method, str(CONCURRENCY), str(seconds)]
    if token_file is not None:
        args += ["--tokens", str(token_file)]
    before = server.cpu_seconds()
    result = await harness.client("bench.load", *args, limit_seconds=seconds + 60)
    used = server.cpu_seconds() - before
    return result, round(used / max(result["calls"], 1) * 1e6, 1)


def _ratios(rates: list[float], bases: list[float]) -> list[float]:
    """Each round's rate over the same round's base rate."""
    return [rate / base for rate, base in zip(rates, bases, strict=True)]


async def run(context: Context, plan: Plan) -> dict[str, Any]:
    one = context.workdir / "one-token"
    one.write_text(mint(context.key, access_claims(iss=ISSUER, client_id=CLIENT_ID)))
    many = context.workdir / "many-tokens"
    many.write_text("\n".join(mint(context.key) for _ in range(plan.first_sight_tokens)))
    rows = ("bare", "bare_header", "public_no_metrics", "public", "cached", "bare_uvloop", "cached_uvloop")
    rates: dict[str, list[float]] = {name: [] for name in rows}
    cpu: dict[str, list[float]] = {name: [] for name in rows}
    errors = 0
    async with (
        harness.server("bench.servers", "bare") as bare,
        harness.server("bench.servers", "gateway", context.jwks_url, ISSUER, CLIENT_ID) as gateway,
        harness.server("bench.servers", "gateway", context.jwks_url, ISSUER, CLIENT_ID, "no-metrics") as plain,
        harness.server("bench.servers", "bare", "uvloop") as bare_uvloop,
        harness.server("bench.servers", "gateway", context.jwks_url, ISSUER, CLIENT_ID, "uvloop") as gateway_uvloop,
    ):
        measurements = (
            ("bare", bare, REQUIRED_METHOD, None),
            # The same bytes on the wire as the cached row: the bare echo ignores the authorization header.
            ("bare_header", bare, REQUIRED_METHOD, one),
            # The ladder from the bare echo to a cached bearer: the table and the pipeline without metrics, with
            # metrics (as the gateway runs), then the bearer check.
            ("public_no_metrics", plain, PUBLIC_METHOD, None),
            ("public", gateway, PUBLIC_METHOD, None),
            ("cached", gateway, REQUIRED_METHOD, one),
            # Both again on uvloop's event loop: the loop is a choice of the process (`--event-loop`).
            ("bare_uvloop", bare_uvloop, REQUIRED_METHOD, None),
            ("cached_uvloop", gateway_uvloop, REQUIRED_METHOD, one),
        )
        for round_number in range(plan.unary_rounds):
            for name, server, method, tokens in measurements if round_number % 2 == 0 else measurements[::-1]:
                result, per_call = await _load(server, method, plan.unary_seconds, tokens)
                rates[name].append(result["calls_per_second"])
                cpu[name].append(per_call)
                errors += int(result["errors"])
        first_sight, first_sight_cpu = await _load(gateway, REQUIRED_METHOD, plan.unary_seconds, many)
        errors += int(first_sight["errors"])
    base = statistics.median(rates["bare"])
    public = statistics.median(rates["public"])
    cached = statistics.median(rates["cached"])
    by_round = _ratios(rates["cached"], rates["bare"])
    return {
        "note": NOTE,
        "concurrency": CONCURRENCY,
        "rounds": plan.unary_rounds,
        "seconds_per_measurement": plan.unary_seconds,
        "bare_echo_calls_per_second": round(base, 1),
        "public_calls_per_second": round(public, 1),
        "public_no_metrics_calls_per_second": round(statistics.median(rates["public_no_metrics"]), 1),
        "authenticated_cached_calls_per_second": round(cached, 1),
        "authenticated_first_sight_calls_per_second": round(first_sight["calls_per_second"], 1),
        # The headline ratios: medians of the rounds' own ratios (see the module docstring).
        "ratio_public_vs_bare": round(statistics.median(_ratios(rates["public"], rates["bare"])), 3),
        "ratio_public_no_metrics_vs_bare": round(
            statistics.median(_ratios(rates["public_no_metrics"], rates["bare"])), 3
        ),
        "ratio_authenticated_vs_bare": round(statistics.median(by_round), 3),
        "ratio_authenticated_vs_bare_with_header": round(
            statistics.median(_ratios(rates["cached"], rates["bare_header"])), 3
        ),
        "ratio_bare_with_header_vs_bare": round(statistics.median(_ratios(rates["bare_header"], rates["bare"])), 3),
        # The same, as ratios of the rates' medians.
        "ratio_of_medians_authenticated_vs_bare": round(cached / base, 3),
        "ratio_of_medians_public_vs_bare": round(public / base, 3),
        "bare_echo_with_header_calls_per_second": round(statistics.median(rates["bare_header"]), 1),
        "ratio_first_sight_vs_bare": round(first_sight["calls_per_second"] / base, 3),
        "bare_uvloop_calls_per_second": round(statistics.median(rates["bare_uvloop"]), 1),
        "authenticated_cached_uvloop_calls_per_second": round(statistics.median(rates["cached_uvloop"]), 1),
        # uvloop rows: against the bare echo on the default loop, and against the bare echo on uvloop too.
        "ratio_bare_uvloop_vs_bare": round(statistics.median(_ratios(rates["bare_uvloop"], rates["bare"])), 3),
        "ratio_authenticated_uvloop_vs_bare": round(
            statistics.median(_ratios(rates["cached_uvloop"], rates["bare"])), 3
        ),
        "ratio_authenticated_uvloop_vs_bare_uvloop": round(
            statistics.median(_ratios(rates["cached_uvloop"], rates["bare_uvloop"])), 3
        ),
        "ratios_authenticated_vs_bare_by_round": [round(r, 3) for r in by_round],
        "calls_per_second_by_round": {name: [round(r) for r in values] for name, values in rates.items()},
        "server_cpu_us_per_call": {
            "bare": statistics.median(cpu["bare"]),
            "bare_with_header": statistics.median(cpu["bare_header"]),
            "public_no_metrics": statistics.median(cpu["public_no_metrics"]),
            "public": statistics.median(cpu["public"]),
            "authenticated_cached": statistics.median(cpu["cached"]),
            "bare_uvloop": statistics.median(cpu["bare_uvloop"]),
            "authenticated_cached_uvloop": statistics.median(cpu["cached_uvloop"]),
            "authenticated_first_sight": first_sight_cpu,
        },
        "first_sight_calls": int(first_sight["calls"]),
        "failed_calls": errors,
    }

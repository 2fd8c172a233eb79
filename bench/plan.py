"""How long and how big each benchmark runs (the full run and `--quick`), and what all of them share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.testing import SigningKey


@dataclass(frozen=True)
class Plan:
    """Durations and counts of one run. Every loop in the benchmarks is bounded by these."""

    # How often the compared servers of benchmarks 2 and 6 are measured in turn (medians are reported).
    rounds: int = 3
    # 1. authenticated unary: rounds (short ones, many: the machine's speed drifts), each measurement's seconds,
    #    first-sight tokens
    unary_rounds: int = 12
    unary_seconds: float = 1.0
    first_sight_tokens: int = 3000
    # 2. one stream, fast model: seconds of turns back to back, tokens per turn
    throughput_seconds: float = 2.0
    throughput_tokens: int = 20_000
    # 3. concurrent paced streams: the steps, tokens a second per stream, seconds each stream lasts, start spread
    stream_steps: tuple[int, ...] = (100, 250, 500, 1000)
    stream_rate: float = 50.0
    stream_seconds: float = 5.0
    stream_spread_seconds: float = 1.0
    # 4. cancellation trials
    cancel_trials: int = 200
    # 5. overload: the concurrency limit (as many streams held), seconds of overload, extra calls a second
    overload_limit: int = 100
    overload_seconds: float = 3.0
    overload_extra_per_second: float = 100.0
    # 6. workers: seconds per measurement, channels (connections), calls in flight per channel
    workers_seconds: float = 3.0
    workers_channels: int = 16
    workers_concurrency: int = 4
    # 7. web face vs gRPC face vs SSE, transport only (bench/streams.py): seconds per variant, events per stream
    web_seconds: float = 2.0
    web_events: int = 20_000
    # 8. durable turns (bench/durable.py): trials of each measure (resumes: twice as many)
    durable_trials: int = 10


FULL = Plan()
QUICK = Plan(
    rounds=1,
    unary_rounds=2,
    unary_seconds=0.3,
    first_sight_tokens=100,
    throughput_seconds=0.3,
    throughput_tokens=2_000,
    stream_steps=(10,),
    stream_seconds=0.6,
    stream_spread_seconds=0.2,
    cancel_trials=5,
    overload_limit=10,
    overload_seconds=0.5,
    overload_extra_per_second=20.0,
    workers_seconds=0.4,
    workers_channels=4,
    workers_concurrency=2,
    web_seconds=0.2,
    web_events=2_000,
    durable_trials=1,
)


@dataclass(frozen=True)
class Context:
    """What every benchmark of one run shares: the signing key, and the wire fake serving DynamoDB and JWKS."""

    key: SigningKey
    fake_url: str
    fake_pid: int
    workdir: Path

    @property
    def jwks_url(self) -> str:
        return f"{self.fake_url}/jwks.json"

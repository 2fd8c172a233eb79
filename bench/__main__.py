"""Run the benchmarks: `python -m bench [--seconds N]` (or `make bench`). Prints ratios, writes JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
from pathlib import Path

import grpc

from bench import auth

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
    print(f"written to {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()

"""Run every benchmark and print Markdown tables (``make bench``; ``--quick`` for a smoke run).

Results go to stdout; benchmarks/RESULTS.md records a full run with its machine and versions.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import asyncio
from collections.abc import Callable

import bench_guards
import bench_ratelimit
import bench_redis
from harness import loops, measure, paired_overhead, table

from aioresilience.testing import RedisServer
from aioresilience.testing._redis_server import INSTALL_HINT

PEERS = [
    "aioresilience",
    "aiolimiter",
    "limits",
    "pyrate-limiter",
    "hyx",
    "aiobreaker",
    "purgatory",
    "backoff",
    "tenacity",
    "stamina",
    "anyio",
    "uvloop",
    "redis",
]


def guards(loop_name: str, factory: Callable[[], asyncio.AbstractEventLoop], quick: bool) -> str:
    n, repeats = (5_000, 3) if quick else (30_000, 9)
    sections = {
        "Circuit breaker, closed path": bench_guards.breaker_cases(),
        "Retry, first attempt succeeds": bench_guards.retry_cases(),
        "Timeout that does not fire": bench_guards.timeout_cases(),
        "Bulkhead, uncontended": bench_guards.bulkhead_cases(),
        "Queue, put+get pair": bench_guards.queue_cases(),
        "Adaptive limiter, admit+release": bench_guards.adaptive_cases(),
        "Pipeline: timeout -> rate limit -> retry -> breaker -> timeout": (
            bench_guards.pipeline_cases()
        ),
    }
    out = []
    with asyncio.Runner(loop_factory=factory) as runner:
        for title, cases in sections.items():
            out.append(table(f"{title} ({loop_name})", runner.run(measure(cases, n, repeats))))
        pairs = 6 if quick else 42  # even: each of the two goes first equally often
        lines = [
            f"Five-strategy pipeline, extra cost measured in {pairs} adjacent pairs "
            f"({n // 6:,} calls each; median, and 10th-90th percentile of the pairs) "
            f"({loop_name}):",
            "",
        ]
        for name, (base, variant) in bench_guards.pipeline_pairs().items():
            median, low, high = runner.run(paired_overhead(base, variant, n // 6, pairs))
            lines.append(f"- {name}: {median:+.1%} ({low:+.1%} .. {high:+.1%})")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def header() -> str:
    versions = []
    for name in PEERS:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {os.cpu_count()} cores; " + ", ".join(versions) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke run")
    parser.add_argument(
        "--only",
        choices=["ratelimit", "guards", "keyed", "redis"],
        help="run one group: ratelimit (admit, accuracy), guards, keyed (and burst after idle), "
        "redis (a redis-server the bench starts)",
    )
    args = parser.parse_args()
    print(header())
    for loop_name, factory in loops().items():
        if args.only in (None, "ratelimit"):
            print(bench_ratelimit.run(factory, loop_name, args.quick), flush=True)
        if args.only in (None, "guards"):
            print(guards(loop_name, factory, args.quick), flush=True)
    if args.only in (None, "keyed"):
        print(bench_ratelimit.run_once(args.quick), flush=True)
    if args.only in (None, "redis"):
        if RedisServer.available():
            print(bench_redis.run(loops(), args.quick), flush=True)
        else:
            print(f"### Redis: skipped, redis-server not found; {INSTALL_HINT}\n", flush=True)


if __name__ == "__main__":
    main()

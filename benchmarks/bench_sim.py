"""The simulator's own speed and memory (issue 15).

- ``sim``: simulated requests per second of wall time for one variant, 10 simulated minutes
  at 200 requests/s, through the five-strategy pipeline (timeout -> rate limit -> retry ->
  breaker -> timeout) and, in the same run, through no strategy at all (the engine, the
  dependency model and the loop alone: the reference the pipeline's cost is a ratio to).
  The two alternate, ``repeats`` times each; medians. Target: >= 20,000 requests/s.
- ``sim_memory``: the tracemalloc peak of the same variant run for 10 and for 60 simulated
  minutes: the aggregates stream (at most 600 intervals, log-bucketed histograms), so the
  peak should not grow with the run's length. tracemalloc slows the run down: these runs are
  not timed.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from typing import Any

from aioresilience.sim import Scenario, run_scenario
from aioresilience.sim._config import _parse

SCENARIO = """
name = "bench"
question = "How fast does the simulator run?"
seed = 1
duration = "10m"

[arrivals]
rate = "200/s"

[dependency]
servers = 40
latency = { distribution = "lognormal", mean = "50ms", sigma = 0.5 }
error_rate = 0.01

[[variants]]
name = "five strategies"

[[variants.pipeline]]
strategy = "timeout"
seconds = "5s"

[[variants.pipeline]]
strategy = "rate_limit"
rate = "1000/s"

[[variants.pipeline]]
strategy = "retry"
attempts = 3

[[variants.pipeline]]
strategy = "circuit_breaker"

[[variants.pipeline]]
strategy = "timeout"
seconds = "1s"

[[variants]]
name = "no strategy"
"""


def scenario() -> Scenario:
    return _parse(SCENARIO, "bench_sim.py", "bench_sim.py", "bench")


def _one(base: Scenario, index: int, duration: float) -> Scenario:
    return base.replace(variants=base.variants[index : index + 1], duration=duration)


def speed(quick: bool) -> dict[str, Any]:
    base = scenario()
    duration = 120.0 if quick else 600.0
    repeats = 3 if quick else 5
    runs: dict[str, list[float]] = {v.name: [] for v in base.variants}
    requests: dict[str, int] = {}
    for _ in range(repeats):
        for index, variant in enumerate(base.variants):
            one = _one(base, index, duration)
            gc.collect()
            started = time.perf_counter()
            result = run_scenario(one)
            runs[variant.name].append(time.perf_counter() - started)
            requests[variant.name] = result.data["variants"][0]["summary"]["requests"]
    bare = statistics.median(runs["no strategy"])
    rows = [
        {
            "case": name,
            "requests": requests[name],
            "median_s": statistics.median(seconds),
            "per_second": requests[name] / statistics.median(seconds),
            "x_engine": statistics.median(seconds) / bare,
        }
        for name, seconds in runs.items()
    ]
    return {
        "kind": "sim",
        "title": f"Simulator: {duration / 60:g} simulated minutes at 200 requests/s, one variant",
        "repeats": repeats,
        "rows": rows,
    }


def memory(quick: bool) -> dict[str, Any]:
    base = scenario()
    minutes = (1, 6) if quick else (10, 60)
    rows = []
    for m in minutes:
        one = _one(base, 0, m * 60.0)
        gc.collect()
        tracemalloc.start()
        result = run_scenario(one)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append(
            {
                "minutes": m,
                "requests": result.data["variants"][0]["summary"]["requests"],
                "peak_kib": peak / 1024,
            }
        )
    return {
        "kind": "sim_memory",
        "title": "Simulator memory: tracemalloc peak of one variant (five strategies)",
        "rows": rows,
    }


def run(quick: bool, parts: set[str]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    if "sim" in parts:
        out.append(("sim", speed(quick)))
    if "sim_memory" in parts:
        out.append(("sim_memory", memory(quick)))
    return out

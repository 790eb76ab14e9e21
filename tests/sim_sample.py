"""A synthetic simulation result in the simulator's JSON shape (version 1), for the report and
live-view tests: an outage from 40 s to 70 s, seen by up to six variants, the first of which
keeps the dependency down longer (a retry storm). Deterministic (no randomness): the same
arguments give the same document.
"""

from __future__ import annotations

import math
from typing import Any

OUTAGE = (40.0, 70.0)
SERIES_KEYS = (
    "t",
    "offered",
    "succeeded",
    "failed",
    "refused",
    "throughput_per_s",
    "p50_s",
    "p95_s",
    "p99_s",
    "dependency_calls",
    "dependency_in_flight_max",
    "dependency_healthy",
    "breaker_open_fraction",
    "limiter_admitted",
)


def sample_variant(index: int, intervals: int, interval_s: float, name: str) -> dict[str, Any]:
    recovered = OUTAGE[1] + (20.0 if index == 0 else 5.0 * index)
    series: dict[str, list[Any]] = {key: [] for key in SERIES_KEYS}
    for i in range(intervals):
        t = i * interval_s
        down = OUTAGE[0] <= t < recovered
        offered = round((200 + 20 * math.sin(t / 9)) * interval_s)
        refused = round(offered * (0.8 if down and index else 0.02))
        failed = round((offered - refused) * (0.9 if down else 0.01))
        succeeded = offered - refused - failed
        # An interval in which nothing completed has no percentiles (null, as the engine says).
        empty = down and index > 0 and OUTAGE[0] + 2 <= t < OUTAGE[0] + 6
        if empty:
            succeeded, failed, refused = 0, 0, offered
        p50 = 0.02 + 0.002 * index + (0.5 if down else 0)
        row = {
            "t": t,
            "offered": offered,
            "succeeded": succeeded,
            "failed": failed,
            "refused": refused,
            "throughput_per_s": succeeded / interval_s,
            "p50_s": None if empty else p50,
            "p95_s": None if empty else p50 * 3,
            "p99_s": None if empty else p50 * 6,
            "dependency_calls": round((offered - refused) * (4 if down and index == 0 else 1)),
            "dependency_in_flight_max": 50 if down else 8 + index,
            "dependency_healthy": 0 if down else 1,
            "breaker_open_fraction": (0.75 if down else 0.0) if index else 0.0,
            "limiter_admitted": offered - refused,
        }
        for key, value in row.items():
            series[key].append(value)
    requests = sum(series["offered"])
    succeeded_total = sum(series["succeeded"])
    return {
        "name": name,
        "description": f"variant {index}: {name}",
        "pipeline": [
            {"kind": "timeout", "name": "attempt", "seconds": 2.0},
            {"kind": "retry", "name": "retry", "attempts": 4},
        ],
        "summary": {
            "requests": requests,
            "succeeded": succeeded_total,
            "failed": sum(series["failed"]),
            "refused": sum(series["refused"]),
            "success_pct": 100.0 * succeeded_total / requests,
            "goodput_per_s": succeeded_total / (intervals * interval_s),
            "latency_s": {"p50": 0.021, "p95": 0.35, "p99": 1.9, "mean": 0.2},
            "dependency_calls": sum(series["dependency_calls"]),
            "amplification": sum(series["dependency_calls"]) / requests,
            "refusals": {"CircuitOpenError": 900 * index, "RateLimited": 12} if index else {},
            "failures": {"TimeoutExceeded": 4000, "DependencyError": 120},
            "breaker_open_s": 22.5 * index,
        },
        "series": series,
        "engine_note": "an extra key the report must tolerate",
    }


def sample_result(
    variants: int = 2,
    intervals: int = 120,
    interval_s: float = 1.0,
    names: list[str] | None = None,
) -> dict[str, Any]:
    names = names or ["naive retry", "budget + breaker", "bulkhead", "adaptive", "hedge", "bare"]
    return {
        "version": 1,
        "scenario": {
            "name": "outage",
            "question": "What does a retry storm do to a dependency that is down?",
            "seed": 7,
            "duration_s": intervals * interval_s,
            "interval_s": interval_s,
            "source": "built-in",
            "arrivals": {"kind": "poisson", "rate_per_s": 200.0},
            "dependency": {"kind": "servers", "capacity": 50, "outages": [list(OUTAGE)]},
        },
        "answer": "The budgeted pipeline sent a quarter of the naive variant's calls to the dead "
        "dependency, and it recovered 15 s sooner.",
        "variants": [
            sample_variant(i, intervals, interval_s, names[i % len(names)]) for i in range(variants)
        ],
    }

"""Timing harness shared by every benchmark module.

A case is a factory returning ``async def run(n)`` that performs ``n`` operations in a tight
loop of its own (so harness overhead is the same for everyone and not measured per op). Each
case is timed ``repeats`` times, interleaved with the others and with a bare ``await f()``
baseline, and reported as the median ns/op and its ratio to the baseline's median from the
same run: the machines are shared and noisy, so only same-run ratios are meaningful.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

RunN = Callable[[int], Awaitable[None]]


async def trivial() -> None:
    """The protected call of every case: a coroutine that does nothing."""
    return None


def bare_case() -> RunN:
    async def run(n: int) -> None:
        f = trivial
        for _ in range(n):
            await f()

    return run


def with_guard(make_guard: Callable[[], Any]) -> Callable[[], RunN]:
    """A case that runs ``await f()`` inside ``async with guard`` (made once per case)."""

    def make() -> RunN:
        guard = make_guard()

        async def run(n: int) -> None:
            f = trivial
            for _ in range(n):
                async with guard:
                    await f()

        return run

    return make


def acquire_then_call(
    make_acquire: Callable[[], Callable[[], Awaitable[Any]]],
) -> Callable[[], RunN]:
    """A case that runs ``await acquire()`` then ``await f()``."""

    def make() -> RunN:
        acquire = make_acquire()

        async def run(n: int) -> None:
            f = trivial
            for _ in range(n):
                await acquire()
                await f()

        return run

    return make


@dataclass
class Result:
    name: str
    ns_per_op: float
    ratio: float
    spread: float  # interquartile range of the repeats over their median: how noisy it was


async def measure(cases: dict[str, Callable[[], RunN]], n: int, repeats: int) -> list[Result]:
    """Median ns/op of each case and its ratio to ``bare`` measured in the same rounds."""
    runners: dict[str, RunN] = {"bare await f()": bare_case()}
    runners.update((name, factory()) for name, factory in cases.items())
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():  # warm-up
        await run(min(n, 2000))
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, run in runners.items():
                started = time.perf_counter()
                await run(n)
                samples[name].append((time.perf_counter() - started) / n * 1e9)
    finally:
        gc.enable()
    bare = statistics.median(samples["bare await f()"])
    return [
        Result(name, statistics.median(values), statistics.median(values) / bare, spread(values))
        for name, values in samples.items()
    ]


def spread(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return (high - low) / statistics.median(values)


async def paired_overhead(
    base: Callable[[], RunN], variant: Callable[[], RunN], n: int, pairs: int
) -> tuple[float, float, float]:
    """How much slower ``variant`` is than ``base``, for differences smaller than the drift
    of a shared machine: the two run in adjacent pairs (which goes first alternates), and the
    per-pair ratios are summarised as (median, 10th percentile, 90th percentile) - 1."""
    run_base, run_variant = base(), variant()
    for run in (run_base, run_variant):  # warm-up
        await run(min(n, 2000))
    ratios = []
    gc.collect()
    gc.disable()
    try:
        for index in range(pairs):
            timed = {}
            order = (run_base, run_variant) if index % 2 else (run_variant, run_base)
            for run in order:
                started = time.perf_counter()
                await run(n)
                timed[run] = time.perf_counter() - started
            ratios.append(timed[run_variant] / timed[run_base])
    finally:
        gc.enable()
    deciles = statistics.quantiles(ratios, n=10, method="inclusive")  # within what was seen
    return statistics.median(ratios) - 1, deciles[0] - 1, deciles[-1] - 1


def loops() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loops every benchmark runs on: asyncio's default, and uvloop when installed."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the bench group installs it
        pass
    else:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


def cases(title: str, loop: str, results: list[Result]) -> dict[str, Any]:
    """A ``cases`` section (tables.py) of ``measure``'s results."""
    return {
        "kind": "cases",
        "title": title,
        "loop": loop,
        "rows": [
            {"case": r.name, "ns": r.ns_per_op, "ratio": r.ratio, "spread": r.spread}
            for r in results
        ],
    }


def installed_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Each distribution's installed version, None where it is missing (the runs table says
    which peers a run measured)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out

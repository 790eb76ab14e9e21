"""Streaming aggregates of a simulation: memory stays flat however long it runs.

No request is kept. Each simulated interval has a few counters and a log-bucketed latency
histogram, turned into one row of numbers when the interval closes; the whole run has one
more histogram for its summary percentiles.

The histogram is the log-bucketed kind of HdrHistogram and DDSketch (Masson, Rim and Lee,
"DDSketch: a fast and fully-mergeable quantile sketch with relative-error guarantees", VLDB
2019): bucket ``i`` holds the values in ``(m*g^(i-1), m*g^i]``, reported as the bucket's
geometric middle, so every quantile is within a relative error of ``(g-1)/2`` (0.5 % here)
and the buckets needed grow with the log of the range, not with the count.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SERIES_KEYS", "IntervalRow", "LatencyHistogram", "Metrics", "Window", "round_sig"]

#: The smallest latency told apart (1 µs); anything faster lands in the first bucket.
_MIN_LATENCY = 1e-6
_GAMMA = 1.01
_LOG_GAMMA = math.log(_GAMMA)


def round_sig(value: float, digits: int = 6) -> float:
    """``value`` to ``digits`` significant digits, so the JSON is the same on every platform
    (and the last bits of a sum do not decide a byte of the output)."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def bucket_of(seconds: float) -> int:
    """The index of the histogram bucket that holds ``seconds``."""
    if seconds > _MIN_LATENCY:
        return math.ceil(math.log(seconds / _MIN_LATENCY) / _LOG_GAMMA)
    return 0


class LatencyHistogram:
    """Counts of latencies in log-spaced buckets (see the module's docstring)."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.add_in(bucket_of(seconds), seconds)

    def add_in(self, index: int, seconds: float) -> None:
        """Add ``seconds``, whose bucket is ``index`` (``bucket_of(seconds)``): a latency
        counted in several histograms is bucketed once."""
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1
        self.total += seconds

    def merge(self, other: LatencyHistogram) -> None:
        buckets = self.buckets
        for index, n in other.buckets.items():
            buckets[index] = buckets.get(index, 0) + n
        self.count += other.count
        self.total += other.total

    def quantiles(self, *qs: float) -> list[float | None]:
        """The nearest-rank quantiles ``qs`` (ascending, in (0, 1]); None when empty."""
        if not self.count:
            return [None] * len(qs)
        ranks = [max(1, math.ceil(q * self.count)) for q in qs]
        found: list[float | None] = []
        seen = 0
        want = iter(ranks)
        rank = next(want)
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            while seen >= rank:
                found.append(round_sig(_MIN_LATENCY * _GAMMA ** (index - 0.5)))
                rank = next(want, 0)
                if rank == 0:
                    return found
        return found  # pragma: no cover - the last rank is the count, always reached

    def mean(self) -> float | None:
        return round_sig(self.total / self.count) if self.count else None


class IntervalRow:
    """The counters of one simulated interval, reset when it closes."""

    __slots__ = (
        "dependency_calls",
        "dependency_errors",
        "failed",
        "in_flight_max",
        "latency",
        "offered",
        "refused",
        "succeeded",
    )

    def __init__(self) -> None:
        self.offered = 0
        self.succeeded = 0
        self.failed = 0
        self.refused = 0
        self.dependency_calls = 0
        self.dependency_errors = 0
        self.in_flight_max = 0
        self.latency = LatencyHistogram()


#: The per-interval series of the result, in the order the JSON lists them.
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
    "dependency_errors",
    "dependency_in_flight_max",
    "dependency_healthy",
    "breaker_open_fraction",
    "limiter_admitted",
)


class Window:
    """The calls that arrive within ``[start, end)`` of a named event (an outage, a spike, a
    burst): counted by arrival, whenever they end, with their own latency histogram."""

    __slots__ = (
        "dependency_calls",
        "end",
        "failed",
        "label",
        "latency",
        "offered",
        "refused",
        "start",
        "succeeded",
    )

    def __init__(self, label: str, start: float, end: float) -> None:
        self.label = label
        self.start = start
        self.end = end
        self.offered = 0
        self.succeeded = 0
        self.failed = 0
        self.refused = 0
        self.dependency_calls = 0  # made during the window, by whichever request
        self.latency = LatencyHistogram()

    def to_json(self) -> dict[str, Any]:
        p50, p95, p99 = self.latency.quantiles(0.5, 0.95, 0.99)
        return {
            "label": self.label,
            "start_s": round_sig(self.start),
            "end_s": round_sig(self.end),
            "offered": self.offered,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "refused": self.refused,
            "success_pct": (
                round_sig(100.0 * self.succeeded / self.offered) if self.offered else None
            ),
            "latency_s": {"p50": p50, "p95": p95, "p99": p99, "mean": self.latency.mean()},
            "dependency_calls": self.dependency_calls,
        }


class Metrics:
    """Everything one variant's run counts: the open interval, the closed series, the totals.

    The engine calls :meth:`outcome` once per finished request and :meth:`dependency_call`
    once per call that reaches the dependency; :meth:`close_interval` turns the open
    interval into one value of every series and returns them as a row.
    """

    def __init__(self, interval_s: float, windows: tuple[Window, ...] = ()) -> None:
        self.interval_s = interval_s
        self.windows = windows
        self.row = IntervalRow()
        self.series: dict[str, list[Any]] = {key: [] for key in SERIES_KEYS}
        self.latency = LatencyHistogram()
        self.requests = 0
        self.succeeded = 0
        self.succeeded_in_run = 0  # ended by the run's end: goodput's numerator (not the drain's)
        self.failed = 0
        self.refused = 0
        self.unfinished = 0
        self.substituted_count = 0  # answered by a fallback or chaos value, not the dependency
        self.dependency_calls = 0
        self.refusals: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        # The error's kind -> calls; the calls answered "ok" are the rest (see summary()).
        self.dependency_error_kinds: dict[str, int] = {}
        self.closed = False  # after the run's last interval, outcomes count in totals only

    def window_of(self, started: float) -> Window | None:
        """The window a request that arrived at ``started`` counts in (the first that holds
        it), if any."""
        for window in self.windows:
            if window.start <= started < window.end:
                return window
        return None

    def offered(self, window: Window | None) -> None:
        self.requests += 1
        self.row.offered += 1
        if window is not None:
            window.offered += 1

    def success(self, latency: float, window: Window | None) -> None:
        self.succeeded += 1
        index = bucket_of(latency)  # once for the two or three histograms it counts in
        self.latency.add_in(index, latency)
        if not self.closed:
            self.succeeded_in_run += 1
            row = self.row
            row.succeeded += 1
            row.latency.add_in(index, latency)
        if window is not None:
            window.succeeded += 1
            window.latency.add_in(index, latency)

    def substituted(self) -> None:
        self.substituted_count += 1

    def failure(self, kind: str, window: Window | None) -> None:
        self.failed += 1
        self.failures[kind] = self.failures.get(kind, 0) + 1
        if not self.closed:
            self.row.failed += 1
        if window is not None:
            window.failed += 1

    def refusal(self, kind: str, window: Window | None) -> None:
        self.refused += 1
        self.refusals[kind] = self.refusals.get(kind, 0) + 1
        if not self.closed:
            self.row.refused += 1
        if window is not None:
            window.refused += 1

    def dependency_call(self, now: float, in_flight: int, error: BaseException | None) -> None:
        if self.windows:
            window = self.window_of(now)
            if window is not None:
                window.dependency_calls += 1
        self.dependency_calls += 1
        row = self.row
        row.dependency_calls += 1
        if in_flight > row.in_flight_max:
            row.in_flight_max = in_flight
        if error is not None:
            row.dependency_errors += 1
            errors = self.dependency_error_kinds
            kind = type(error).__name__
            errors[kind] = errors.get(kind, 0) + 1

    def close_interval(
        self,
        start: float,
        healthy: bool,
        breaker_open_fraction: float,
        limiter_admitted: int,
        length: float | None = None,
    ) -> dict[str, Any]:
        """Close the interval that began at ``start``; its values, by series key."""
        row = self.row
        p50, p95, p99 = row.latency.quantiles(0.5, 0.95, 0.99)
        values: dict[str, Any] = {
            "t": round_sig(start),
            "offered": row.offered,
            "succeeded": row.succeeded,
            "failed": row.failed,
            "refused": row.refused,
            # the last interval may be shorter than the others
            "throughput_per_s": round_sig(row.succeeded / (length or self.interval_s)),
            "p50_s": p50,
            "p95_s": p95,
            "p99_s": p99,
            "dependency_calls": row.dependency_calls,
            "dependency_errors": row.dependency_errors,
            "dependency_in_flight_max": row.in_flight_max,
            "dependency_healthy": int(healthy),
            "breaker_open_fraction": round_sig(breaker_open_fraction),
            "limiter_admitted": limiter_admitted,
        }
        series = self.series
        for key, value in values.items():
            series[key].append(value)
        self.row = IntervalRow()
        return values

    def dependency_answers(self) -> dict[str, int]:
        """Calls by answer: ``"ok"`` or the error's kind (only the answers given at least once)."""
        answers = dict(self.dependency_error_kinds)
        ok = self.dependency_calls - sum(answers.values())
        if ok:
            answers["ok"] = ok
        return answers

    def summary(self, duration_s: float, breaker_open_s: float) -> dict[str, Any]:
        p50, p95, p99 = self.latency.quantiles(0.5, 0.95, 0.99)
        requests = self.requests
        return {
            "requests": requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "refused": self.refused,
            "substituted": self.substituted_count,
            "unfinished": self.unfinished,
            "success_pct": round_sig(100.0 * self.succeeded / requests) if requests else None,
            # calls served per second of the run: those that ended in the drain after it
            # count in succeeded and success_pct, not in this rate
            "goodput_per_s": round_sig(self.succeeded_in_run / duration_s),
            "latency_s": {"p50": p50, "p95": p95, "p99": p99, "mean": self.latency.mean()},
            "dependency_calls": self.dependency_calls,
            "amplification": (round_sig(self.dependency_calls / requests) if requests else None),
            "dependency_answers": dict(sorted(self.dependency_answers().items())),
            "refusals": dict(sorted(self.refusals.items())),
            "failures": dict(sorted(self.failures.items())),
            "breaker_open_s": round_sig(breaker_open_s),
        }

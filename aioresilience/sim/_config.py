"""Scenario files: TOML in, a validated :class:`Scenario` out.

A scenario names a question, the world (``[arrivals]``, ``[dependency]``) and the variants to
compare, each a pipeline written as the builder's calls, outermost first::

    [[variants]]
    name = "budget + breaker"
    [[variants.pipeline]]
    strategy = "retry"
    attempts = 4
    backoff = { kind = "exponential", base = "100ms", cap = "2s", jitter = "full" }
    budget = { kind = "tokens", max_tokens = 10, token_ratio = 0.1 }

Durations are ``"200ms"``, ``"2s"``, ``"10m"``, ``"1h"`` (or a number of seconds); rates are
``"100/s"`` (the library's rate syntax). Every key is checked: an unknown one, a value of the
wrong kind or one the library's constructor refuses is a :class:`ScenarioError` naming the
file, the line and the key (tomllib reports no positions, so the key is found in the source
text by :func:`locate`). Options that take Python callables (``retry_on_result``,
``before_sleep``, a limiter's ``key``, ``chaos_behavior``'s ``behavior``, a custom strategy's
``factory`` for ``strategy = "add"``...) take an import path, ``"package.module:name"`` (a
module beside the scenario file is found too), resolved when the file is loaded; exception
filters take the names in :data:`EXCEPTIONS`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import inspect
import math
import re
import sys
import tomllib
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aioresilience as ar

from .._support.rates import parse_rate
from .._support.validation import MIN_DIVISOR
from ._models import (
    ArrivalSpec,
    Burst,
    DependencyError,
    DependencyOverloaded,
    DependencySpec,
    DependencyUnavailable,
    Diurnal,
    LatencySpec,
    Outage,
    QuotaExceeded,
    QuotaSpec,
    Spike,
)

__all__ = [
    "EXCEPTIONS",
    "STRATEGIES",
    "BuiltPipeline",
    "Scenario",
    "ScenarioError",
    "Substituted",
    "Variant",
    "builtin_names",
    "load_scenario",
    "locate",
    "parse_duration",
]

KeyPath = tuple[str | int, ...]


class ScenarioError(ValueError):
    """A scenario that cannot run: the message names the file, line and key."""


class _Invalid(Exception):
    """Raised inside the loader with the key path; turned into a ScenarioError with a line."""

    def __init__(self, path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


# -- locating a key in the source text --------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def _key_parts(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in text.split(".")]


def locate(source: str, path: KeyPath) -> int | None:
    """The 1-based line where ``path`` (keys and array indices, as tomllib's data nests them)
    is written in ``source``, or the line of its longest written prefix; None if not found.

    Tracks ``[table]`` and ``[[array.of.tables]]`` headers (counting each array's entries)
    and ``key = value`` lines; a key inside an inline table or an inline array is found on
    the line of the key that holds it.
    """
    target = tuple(path)
    counts: dict[KeyPath, int] = {}
    table: KeyPath = ()
    best: tuple[int, int] | None = None  # (prefix length, line)

    def consider(found: KeyPath, line: int) -> None:
        nonlocal best
        n = len(found)
        if target[:n] == found and (best is None or n > best[0]):
            best = (n, line)

    def resolve(parts: list[str]) -> KeyPath:
        """A header's dotted name with each array of tables at its current entry."""
        resolved: list[str | int] = []
        for part in parts:
            resolved.append(part)
            index = counts.get(tuple(resolved))
            if index is not None:
                resolved.append(index)
        return tuple(resolved)

    for number, line in enumerate(source.splitlines(), start=1):
        header = _HEADER.match(line)
        if header is not None:
            parts = _key_parts(header[2])
            if header[1] == "[[":
                parent = resolve(parts[:-1])
                array = (*parent, parts[-1])
                counts[array] = counts.get(array, -1) + 1
                table = (*array, counts[array])
            else:
                table = resolve(parts)
            consider(table, number)
            continue
        key = _KEY.match(line)
        if key is not None:
            consider((*table, *_key_parts(key[1])), number)
    return None if best is None else best[1]


# -- values -----------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*(us|µs|ms|s|m|min|h)\s*$")
_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def _as_float(value: float) -> float:
    """``float(value)``; inf for an int too large for a float (float() raises OverflowError)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def parse_duration(name: str, value: object) -> float:
    """``"200ms"``, ``"2s"``, ``"10m"``, ``"1h"`` or a number of seconds, as seconds (>= 0)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a duration like '200ms', '2s' or '10m', got {value!r}")
    if isinstance(value, int | float):
        seconds = _as_float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)) is not None:
        seconds = float(match[1]) * _SECONDS[match[2]]
    else:
        raise ValueError(f"{name} must be a duration like '200ms', '2s' or '10m', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite duration >= 0, got {value!r}")
    return seconds


def parse_rate_per_s(name: str, value: object) -> float:
    """``"200/s"``, ``"5 per 2 seconds"`` (the library's syntax) or a number, per second."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not (math.isfinite(_as_float(value)) and value >= 0):
            raise ValueError(f"{name} must be a rate >= 0 like '200/s', got {value!r}")
        if 0 < value < MIN_DIVISOR:  # the gaps between arrivals, 1/rate, would be inf
            raise ValueError(f"{name} must be 0 or >= {MIN_DIVISOR:g} per second, got {value!r}")
        return float(value)
    count, period = parse_rate(name, value)
    return count / period


class _Reader:
    """Typed reads of one TOML table, each failure raised with its key path."""

    def __init__(self, data: object, path: KeyPath, what: str) -> None:
        if not isinstance(data, dict):
            raise _Invalid(path, f"{what} must be a table, got {data!r}")
        self.data: dict[str, Any] = data
        self.path = path

    def known(self, keys: Sequence[str]) -> None:
        for key in self.data:
            if key not in keys:
                close = difflib.get_close_matches(key, keys, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise _Invalid(
                    (*self.path, key),
                    f"unknown key {key!r}{hint}; known here: {', '.join(sorted(keys))}",
                )

    def at(self, key: str) -> KeyPath:
        return (*self.path, key)

    def get(self, key: str, convert: Callable[[str, Any], Any], default: Any = None) -> Any:
        if key not in self.data:
            return default
        try:
            return convert(key, self.data[key])
        except _Invalid:
            raise
        except (TypeError, ValueError) as exc:
            raise _Invalid(self.at(key), str(exc)) from None

    def require(self, key: str, convert: Callable[[str, Any], Any]) -> Any:
        if key not in self.data:
            raise _Invalid(self.path, f"missing key {key!r}")
        return self.get(key, convert)


def _int(name: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:,}, got {value!r}")
    return value


def _positive_int(name: str, value: Any) -> int:
    return _int(name, value, 1)


#: Servers and users are each an entry in memory: a bound keeps a typo from taking it all.
_MAX_COUNT = 1_000_000


def _counted(name: str, value: Any) -> int:
    return _int(name, value, 1, _MAX_COUNT)


#: Hedges per call: each is a task per request (delay 0 starts them all at once), so a run's
#: work multiplies by it; Polly allows at most 10 hedged attempts.
_MAX_HEDGED = 100


def _float(name: str, value: Any) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(_as_float(value))
    ):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    number = _float(name, value)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return number


def _fraction(name: str, value: Any) -> float:
    number = _float(name, value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return number


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false, got {value!r}")
    return value


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def convert(name: str, value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return convert


def _python(name: str, value: Any) -> Any:
    """The object an import path ``"package.module:name"`` (``name`` may be dotted) names."""
    if not isinstance(value, str) or value.count(":") != 1:
        raise TypeError(f'{name} must be an import path like "package.module:name", got {value!r}')
    module_name, _, attribute = value.partition(":")
    if not module_name or not attribute:
        raise TypeError(f'{name} must be an import path like "package.module:name", got {value!r}')
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{name}: cannot import {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ValueError(f"{name}: {module_name!r} has no {attribute!r}") from None
    return found


def _pythons(name: str, value: Any) -> tuple[Any, ...]:
    """One import path or an array of them."""
    paths = value if isinstance(value, list) else [value]
    return tuple(_python(name, path) for path in paths)


def _duration_or_none(name: str, value: Any) -> float | None:
    if value == "none":
        return None
    return parse_duration(name, value)


def _tables(
    name: str, value: Any, path: KeyPath, read: Callable[[_Reader], Any]
) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise _Invalid(path, f"{name} must be an array of tables, got {value!r}")
    return tuple(read(_Reader(item, (*path, i), f"{name}[{i}]")) for i, item in enumerate(value))


def _window(r: _Reader) -> tuple[float, float]:
    start = r.require("start", parse_duration)
    end = r.require("end", parse_duration)
    if end <= start:
        raise _Invalid(r.at("end"), f"end must be after start ({start:g}s), got {end:g}s")
    return start, end


# -- arrivals and dependency ------------------------------------------------------------------


def _arrivals(r: _Reader) -> ArrivalSpec:
    r.known(("kind", "rate", "bursts", "diurnal", "users", "think"))
    kind = r.get("kind", _choice("poisson", "closed"), "poisson")
    # A key the kind does not read would be dropped without a word (users = 10 without
    # kind = "closed" ran open-loop arrivals at the default rate).
    for key in ("users", "think") if kind == "poisson" else ("rate", "bursts", "diurnal"):
        if key in r.data:
            raise _Invalid(
                r.at(key),
                f'{key} applies to closed-loop arrivals (kind = "closed") only, and these '
                "are open-loop (poisson)"
                if kind == "poisson"
                else f"{key} applies to open-loop (poisson) arrivals only, and these are "
                'closed-loop (kind = "closed"): users call again a think time after each answer',
            )

    def burst(b: _Reader) -> Burst:
        b.known(("start", "end", "factor"))
        start, end = _window(b)
        return Burst(start, end, b.require("factor", _non_negative))

    def diurnal(name: str, value: Any) -> Diurnal:
        d = _Reader(value, r.at(name), name)
        d.known(("amplitude", "period", "phase"))
        amplitude = d.require("amplitude", _float)
        if not 0 <= amplitude < 1:
            raise _Invalid(d.at("amplitude"), f"amplitude must be in [0, 1), got {amplitude!r}")
        period = d.require("period", parse_duration)
        if period < MIN_DIVISOR:  # t / period would be inf, and its sine a ValueError
            raise _Invalid(d.at("period"), f"period must be >= {MIN_DIVISOR:g}s, got {period!r}")
        return Diurnal(amplitude, period, d.get("phase", _float, 0.0))

    spec = ArrivalSpec(
        kind=kind,
        rate=r.get("rate", parse_rate_per_s, 100.0),
        bursts=tuple(r.get("bursts", lambda n, v: _tables(n, v, r.at(n), burst), ())),
        diurnal=r.get("diurnal", diurnal),
        users=r.get("users", lambda n, v: _int(n, v, 0, _MAX_COUNT), 0),
        think=r.get("think", _positive_duration, 1.0),
    )
    if not math.isfinite(spec.max_rate()):
        raise _Invalid(
            r.at("bursts") if spec.bursts else r.at("rate"),
            f"the peak rate ({spec.rate:g}/s times the bursts' factors) is not a finite rate",
        )
    if kind == "closed" and spec.users < 1:
        raise _Invalid(r.at("users"), "closed-loop arrivals need users >= 1")
    return spec


def _dependency(r: _Reader) -> DependencySpec:
    r.known(
        (
            "servers",
            "latency",
            "knee",
            "slowdown",
            "max_queue",
            "error_rate",
            "outages",
            "spikes",
            "quota",
            "recovery",
            "cold_factor",
            "reject_latency",
        )
    )

    def latency(name: str, value: Any) -> LatencySpec:
        if not isinstance(value, dict):  # a bare duration: exponential with that mean
            return LatencySpec(mean=_positive_duration(name, value))
        lat = _Reader(value, r.at(name), name)
        lat.known(("distribution", "mean", "sigma"))
        if "sigma" in lat.data and lat.data.get("distribution") != "lognormal":
            raise _Invalid(
                lat.at("sigma"),
                'sigma applies to distribution = "lognormal" only, got distribution = '
                f"{lat.data.get('distribution', 'exponential')!r}",
            )
        spec = LatencySpec(
            distribution=lat.get(
                "distribution", _choice("exponential", "lognormal", "constant"), "exponential"
            ),
            mean=lat.require("mean", _positive_duration),
            sigma=lat.get("sigma", _non_negative, 0.5),
        )
        # The draw's mu is log(mean) - sigma^2 / 2: too large a sigma overflows sigma^2 (an
        # OverflowError in the run) or makes the median, mean * exp(-sigma^2 / 2), 0.
        if spec.distribution == "lognormal" and not (
            spec.sigma < 1e150 and spec.mean * math.exp(-(spec.sigma**2) / 2.0) > 0.0
        ):
            raise _Invalid(
                (*r.at(name), "sigma"),
                f"sigma is too large, got {spec.sigma!r}: the median latency, "
                "mean * exp(-sigma^2 / 2), would be 0",
            )
        return spec

    def outage(o: _Reader) -> Outage:
        o.known(("start", "end", "mode", "hang"))
        start, end = _window(o)
        if "hang" in o.data and o.data.get("mode") != "hang":
            raise _Invalid(
                o.at("hang"),
                f'hang applies to mode = "hang" only, got mode = {o.data.get("mode", "error")!r}',
            )
        return Outage(
            start,
            end,
            o.get("mode", _choice("error", "hang", "reset"), "error"),
            o.get("hang", parse_duration, 30.0),
        )

    def spike(s: _Reader) -> Spike:
        s.known(("start", "end", "factor", "extra", "share"))
        start, end = _window(s)
        return Spike(
            start,
            end,
            s.get("factor", _non_negative, 1.0),
            s.get("extra", parse_duration, 0.0),
            s.get("share", _fraction, 1.0),
        )

    def quota(name: str, value: Any) -> QuotaSpec:
        q = _Reader(value, r.at(name), name)
        q.known(("rate",))
        count, period = q.require("rate", parse_rate)
        return QuotaSpec(count, period)

    def max_queue(name: str, value: Any) -> int | None:
        return None if value == "none" else _int(name, value)

    spec = DependencySpec(
        servers=r.get("servers", _counted, 10),
        latency=r.get("latency", latency, LatencySpec()),
        knee=r.get("knee", _non_negative, 1.0),
        slowdown=r.get("slowdown", _non_negative, 0.0),
        max_queue=r.get("max_queue", max_queue),
        error_rate=r.get("error_rate", _fraction, 0.0),
        outages=r.get("outages", lambda n, v: _tables(n, v, r.at(n), outage), ()),
        spikes=r.get("spikes", lambda n, v: _tables(n, v, r.at(n), spike), ()),
        quota=r.get("quota", quota),
        recovery=r.get("recovery", parse_duration, 0.0),
        cold_factor=r.get("cold_factor", _float, 1.0),
        reject_latency=r.get("reject_latency", parse_duration, 0.001),
    )
    if spec.cold_factor < 1:
        raise _Invalid(r.at("cold_factor"), f"cold_factor must be >= 1, got {spec.cold_factor}")
    # A key with no effect without its partner would be dropped without a word.
    if "knee" in r.data and not spec.slowdown:
        raise _Invalid(
            r.at("knee"),
            "knee applies with slowdown > 0 only (past the knee, service slows by slowdown "
            "per unit of utilisation), and slowdown is 0",
        )
    if "cold_factor" in r.data and not spec.recovery:
        raise _Invalid(
            r.at("cold_factor"),
            "cold_factor applies with recovery > 0 only (after an outage, service is "
            "cold_factor times slower for recovery seconds), and recovery is 0",
        )
    return spec


def _positive_duration(name: str, value: Any) -> float:
    seconds = parse_duration(name, value)
    if seconds <= 0:
        raise ValueError(f"{name} must be a duration > 0, got {value!r}")
    return seconds


# -- pipelines ----------------------------------------------------------------------------------

#: Exception names that exception filters (``retry_on``, ``record``, ``on``...) accept.
EXCEPTIONS: dict[str, type[BaseException]] = {
    "Exception": Exception,
    "DependencyError": DependencyError,
    "DependencyUnavailable": DependencyUnavailable,
    "DependencyOverloaded": DependencyOverloaded,
    "QuotaExceeded": QuotaExceeded,
    "TimeoutError": TimeoutError,
    "TimeoutExceeded": ar.TimeoutExceeded,
    "Rejected": ar.Rejected,
    "RateLimited": ar.RateLimited,
    "CircuitBreakerOpenError": ar.CircuitBreakerOpenError,
    "BulkheadFull": ar.BulkheadFull,
    "ConcurrencyLimited": ar.ConcurrencyLimited,
    "LoadShed": ar.LoadShed,
    "ChaosFault": ar.ChaosFault,
}


def _exceptions(name: str, value: Any) -> tuple[type[BaseException], ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{name} must be an exception name or a list of them, got {value!r}")
    found = []
    for n in names:
        if n not in EXCEPTIONS:
            close = difflib.get_close_matches(n, EXCEPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"{name}: unknown exception {n!r}{hint}; known: {', '.join(EXCEPTIONS)}"
            )
        found.append(EXCEPTIONS[n])
    return tuple(found)


def _backoff(name: str, value: Any, path: KeyPath) -> ar.Backoff:
    """``{kind = "exponential", base = "100ms", factor = 2, cap = "2s", jitter = "full"}``,
    ``{kind = "linear", start = ..., step = ...}`` or ``{kind = "constant", delay = ...}``;
    a bare duration is a constant delay."""
    if not isinstance(value, dict):
        return ar.constant(parse_duration(name, value))
    b = _Reader(value, path, name)
    kind = b.require("kind", _choice("exponential", "linear", "constant"))
    jitter = b.get("jitter", _choice("none", "full", "equal", "decorrelated"))
    extra = {} if jitter is None else {"jitter": jitter}
    if kind == "exponential":
        b.known(("kind", "base", "factor", "cap", "jitter"))
        return ar.exponential(
            b.get("base", parse_duration, 0.1),
            factor=b.get("factor", _float, 2.0),
            cap=b.get("cap", _duration_or_none, 30.0),
            **extra,
        )
    if kind == "linear":
        b.known(("kind", "start", "step", "cap", "jitter"))
        return ar.linear(
            b.require("start", parse_duration),
            b.get("step", parse_duration),
            cap=b.get("cap", _duration_or_none),
            **extra,
        )
    b.known(("kind", "delay", "jitter"))
    return ar.constant(b.require("delay", parse_duration), **extra)


def _budget(name: str, value: Any, path: KeyPath) -> Callable[[], ar.RetryBudget]:
    """``{kind = "tokens", max_tokens = 10, token_ratio = 0.1}`` or
    ``{kind = "concurrency", percent = 0.2, min_retries = 3}``: a factory, since every run
    needs a budget of its own."""
    b = _Reader(value, path, name)
    kind = b.require("kind", _choice("tokens", "concurrency"))
    if kind == "tokens":
        b.known(("kind", "max_tokens", "token_ratio"))
        options = {
            "max_tokens": b.get("max_tokens", _float, 10.0),
            "token_ratio": b.get("token_ratio", _float, 0.1),
        }
        ar.RetryBudget.tokens(**options)  # validated now
        return lambda: ar.RetryBudget.tokens(**options)
    b.known(("kind", "percent", "min_retries"))
    concurrency = {
        "percent": b.get("percent", _float, 0.2),
        "min_retries": b.get("min_retries", _int, 3),
    }
    ar.RetryBudget.concurrency(**concurrency)
    return lambda: ar.RetryBudget.concurrency(**concurrency)


def _algorithm(name: str, value: Any, path: KeyPath) -> Callable[[], Any]:
    """An adaptive limit's algorithm: ``{kind = "aimd", timeout = "1s", backoff = 0.9}``,
    ``{kind = "gradient2", ...}`` or ``{kind = "vegas", ...}`` (or just the kind's name)."""
    data = {"kind": value} if isinstance(value, str) else value
    a = _Reader(data, path, name)
    kind = a.require("kind", _choice("aimd", "gradient2", "vegas"))
    options: dict[str, Any]
    if kind == "aimd":
        a.known(("kind", "timeout", "backoff"))
        options = {}
        if "timeout" in a.data:
            options["timeout"] = a.get("timeout", _positive_duration)
        if "backoff" in a.data:
            options["backoff"] = a.get("backoff", _float)
        make: Callable[..., Any] = ar.AIMD
    elif kind == "gradient2":
        a.known(("kind", "tolerance", "smoothing", "queue_size", "long_window"))
        options = {
            k: a.get(k, _int if k == "long_window" else _float)
            for k in ("tolerance", "smoothing", "queue_size", "long_window")
            if k in a.data
        }
        make = ar.Gradient2
    else:
        a.known(("kind", "probe_multiplier"))
        options = {k: a.get(k, _int) for k in ("probe_multiplier",) if k in a.data}
        make = ar.Vegas
    make(**options)
    return lambda: make(**options)


@dataclass(frozen=True)
class Substituted:
    """A result that did not come from the dependency: a fallback's or chaos's ``value``."""

    value: Any
    by: str


#: TOML options of each builder method, and how each value is read. The option ``strategy``
#: names the method; ``name`` is every primitive's name.
_LIMITERS: dict[str, tuple[type[Any], tuple[str, ...]]] = {
    "token_bucket": (ar.TokenBucket, ("capacity", "refill_rate")),
    "gcra": (ar.GCRA, ("limit", "period", "burst")),
    "leaky_bucket": (ar.LeakyBucket, ("capacity", "leak_rate", "mode")),
    "fixed_window": (ar.FixedWindowCounter, ("max_requests", "window_seconds")),
    "sliding_window_log": (ar.SlidingWindowLog, ("max_requests", "window_seconds")),
    "sliding_window_counter": (ar.SlidingWindowCounter, ("max_requests", "window_seconds")),
}

_VALUE_READERS: dict[str, Callable[[str, Any], Any]] = {
    # durations
    "seconds": _duration_or_none,
    "max_wait": _duration_or_none,
    "max_elapsed": _duration_or_none,
    "max_retry_after": _positive_duration,
    "slow_call_duration": _positive_duration,
    "half_open_max_duration": _positive_duration,
    "recovery_timeout": _positive_duration,  # the seed guide's name for break_duration
    "sample_window": _positive_duration,
    "delay": parse_duration,
    "window_seconds": _positive_duration,
    "period": _positive_duration,
    "retry_after": parse_duration,
    # The virtual clock starts at 0: a deadline is a time into the run.
    "deadline": _duration_or_none,
    # rates
    "rate": _str,
    "refill_rate": lambda n, v: v if isinstance(v, str) else _float(n, v),
    "leak_rate": lambda n, v: v if isinstance(v, str) else _float(n, v),
    # counts
    "attempts": _positive_int,
    "capacity": _positive_int,
    "limit": _positive_int,
    "burst": _positive_int,
    "max_requests": _positive_int,
    # "none": only the rate rules trip the breaker (the library's failure_threshold=None)
    "failure_threshold": lambda n, v: None if v == "none" else _positive_int(n, v),
    "minimum_calls": _positive_int,
    "half_open_max_calls": _positive_int,
    "max_concurrent": _positive_int,
    "max_queue": _int,
    "initial_limit": _positive_int,
    "min_limit": _positive_int,
    "max_limit": _positive_int,
    "min_samples": _positive_int,
    "max_hedged": lambda n, v: _int(n, v, 1, _MAX_HEDGED),
    "cost": _positive_int,
    "max_keys": _positive_int,
    # numbers, choices, flags, names
    "failure_rate_threshold": _float,
    "slow_call_rate_threshold": _float,
    "window_size": lambda n, v: (
        v if isinstance(v, int) and not isinstance(v, bool) else _float(n, v)
    ),
    "window": _choice("count", "time"),
    "mode": _choice("meter", "shaper"),
    "retry_rejections": _bool,
    "idempotent": _bool,
    "enabled": _bool,
    "name": _str,
    "value": lambda n, v: v,  # any TOML value, returned as it is
    # Python callables, by import path
    "retry_on_result": _python,
    "before_sleep": _python,
    "on_give_up": _python,
    "failure_result": _python,
    "on_state_change": _pythons,
    "on_result": _python,
    "on_fallback": _python,
    "acceptable": _python,
    "key": _python,
    "behavior": _python,
    "factory": _python,
    "handlers": _pythons,
    "fault": _python,
    # exception filters
    "retry_on": _exceptions,
    "hedge_on": _exceptions,
    "record": _exceptions,
    "ignore": _exceptions,
    "on": _exceptions,
}

#: Builder method -> the TOML keys it takes (besides ``strategy``).
STRATEGIES: dict[str, tuple[str, ...]] = {
    "timeout": ("seconds",),
    "rate_limit": (
        "algorithm",
        "rate",
        "name",
        "max_wait",
        "max_keys",
        "cost",
        "key",
        *sorted({o for _, opts in _LIMITERS.values() for o in opts}),
    ),
    "retry": (
        "attempts",
        "backoff",
        "max_elapsed",
        "deadline",
        "retry_on",
        "retry_on_result",
        "retry_rejections",
        "retry_after",
        "max_retry_after",
        "before_sleep",
        "on_give_up",
        "budget",
        "name",
    ),
    "circuit_breaker": (
        "name",
        "failure_threshold",
        "failure_rate_threshold",
        "slow_call_rate_threshold",
        "slow_call_duration",
        "window",
        "window_size",
        "minimum_calls",
        "break_duration",
        "recovery_timeout",
        "half_open_max_calls",
        "half_open_max_duration",
        "record",
        "ignore",
        "failure_result",
        "on_state_change",
    ),
    "bulkhead": ("max_concurrent", "max_queue", "max_wait", "name"),
    "fallback": ("handlers", "value", "on", "on_result", "on_fallback", "name"),
    "adaptive_limit": (
        "algorithm",
        "initial_limit",
        "min_limit",
        "max_limit",
        "sample_window",
        "min_samples",
        "name",
    ),
    "load_shed": ("signal", "capacity", "thresholds", "priority", "retry_after", "name"),
    "hedge": ("max_hedged", "delay", "idempotent", "acceptable", "hedge_on", "budget"),
    "chaos_fault": ("rate", "fault", "enabled"),
    "chaos_latency": ("rate", "latency", "enabled"),
    "chaos_outcome": ("rate", "value", "enabled"),
    "chaos_behavior": ("rate", "behavior", "enabled"),
    # A custom Strategy: ``factory`` is called for each run's fresh pipeline.
    "add": ("factory",),
}


class Environment:
    """What a built pipeline may read of the run it is in: the client's calls in flight."""

    def __init__(self) -> None:
        self.in_flight = 0


@dataclass
class BuiltPipeline:
    """A fresh pipeline for one run, with handles on the primitives the engine observes."""

    pipeline: ar.Pipeline
    breakers: list[ar.CircuitBreaker]
    limiters: list[ar.RateLimiter[Any] | ar.AdaptiveLimiter]
    warnings: list[str]


@dataclass(frozen=True)
class _Step:
    """One validated builder call: a builder method and its options."""

    strategy: str
    options: Mapping[str, Any]

    def apply(self, builder: ar.PipelineBuilder, env: Environment, built: BuiltPipeline) -> None:
        """Add this strategy, built afresh (primitives, budgets), to ``builder``."""
        _APPLY[self.strategy](builder, env, built, self.options)


def _step(r: _Reader) -> _Step:
    strategy = r.require("strategy", _choice(*STRATEGIES))
    r.known(("strategy", *STRATEGIES[strategy]))
    step = _Step(strategy, {key: _option(r, strategy, key) for key in r.data if key != "strategy"})
    try:
        # Build it once now, so the library's own checks fail at load time, with a line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            step.apply(ar.Pipeline.builder("check"), Environment(), _empty_built())
    except (TypeError, ValueError) as exc:
        raise _Invalid(r.path, f"{strategy}: {exc}") from None
    return step


def _option(r: _Reader, strategy: str, key: str) -> Any:
    """The value of option ``key`` of a ``strategy`` table, read and checked."""
    value = r.data[key]
    path = r.at(key)
    if key == "break_duration" and not isinstance(value, dict):
        return r.get(key, _positive_duration)
    if key in ("backoff", "break_duration"):
        return _wrap(path, lambda: _backoff(key, value, path))
    if key == "budget":
        return _wrap(path, lambda: _budget(key, value, path))
    if key == "algorithm" and strategy == "adaptive_limit":
        return _wrap(path, lambda: _algorithm(key, value, path))
    if key == "algorithm":
        return r.get(key, _choice(*_LIMITERS))
    if key == "rate" and strategy.startswith("chaos_"):
        return r.get(key, _fraction)
    if key == "capacity" and strategy == "load_shed":
        return r.get(key, _positive_int)
    if key == "retry_after" and strategy == "retry":  # (load_shed's is a duration)
        return r.get(key, _python)
    special: dict[str, Callable[[str, Any], Any]] = {
        "latency": _latency_range,
        "thresholds": _thresholds,
        "priority": _priority,
        "signal": _signal,
    }
    return r.get(key, special.get(key) or _VALUE_READERS[key])


def _signal(name: str, value: Any) -> Any:
    """``"in_flight"`` (the client's other calls in flight, as a share of ``capacity``) or an import
    path of a sync callable returning the load, read on every check."""
    return value if value == "in_flight" else _python(name, value)


def _wrap(path: KeyPath, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except _Invalid:
        raise
    except (TypeError, ValueError) as exc:
        raise _Invalid(path, str(exc)) from None


def _latency_range(name: str, value: Any) -> float | tuple[float, float]:
    if isinstance(value, list) and len(value) == 2:
        return parse_duration(name, value[0]), parse_duration(name, value[1])
    return parse_duration(name, value)


def _priority(name: str, value: Any) -> ar.Priority:
    choice = _choice(*(p.name.lower() for p in ar.Priority))(name, value)
    return ar.Priority[choice.upper()]


def _thresholds(name: str, value: Any) -> dict[ar.Priority, float]:
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a table like {{ sheddable = 0.7, normal = 0.9 }}")
    return {_priority(f"{name} key", k): _float(f"{name}.{k}", v) for k, v in value.items()}


def _empty_built() -> BuiltPipeline:
    return BuiltPipeline(ar.Pipeline((), "check"), [], [], [])


def _apply_timeout(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    b.timeout(o.get("seconds"))


def _apply_rate_limit(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    options = dict(o)
    cost = options.pop("cost", 1)
    kind, names = _LIMITERS[options.pop("algorithm", "token_bucket")]
    key = options.pop("key", None)
    for key_name in options:
        if key_name not in (*names, "rate", "name", "max_wait", "max_keys"):
            raise ValueError(f"{key_name!r} is not an option of {kind.__name__}")
    limiter = kind(**options)
    built.limiters.append(limiter)
    b.rate_limit(limiter, key=key, cost=cost)


def _apply_retry(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    options = dict(o)
    if "budget" in options:
        options["budget"] = options["budget"]()
    b.retry(**options)


def _apply_breaker(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    options = dict(o)
    if options.get("name") is None:
        options["name"] = f"breaker{len(built.breakers) + 1}"
    breaker = ar.CircuitBreaker(seed=b.seed, **options)
    built.breakers.append(breaker)
    b.circuit_breaker(breaker)


def _apply_bulkhead(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    options = dict(o)
    b.bulkhead(ar.Bulkhead(options.pop("max_concurrent", 10), **options))


def _apply_fallback(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    options = dict(o)
    handlers: list[Any] = [_substituting(h) for h in options.pop("handlers", ())]
    if "value" in options or not handlers:
        handlers.append(Substituted(options.pop("value", "fallback"), "fallback"))
    b.fallback(*handlers, **options)


def _substituting(handler: Any) -> Callable[[Any], Awaitable[Substituted]]:
    """A fallback handler whose answer is counted as substituted, not as the dependency's."""
    if not callable(handler):
        raise TypeError(f"handlers must name callables, got {handler!r}")

    async def substituted(outcome: Any) -> Substituted:
        value = handler(outcome)
        if inspect.isawaitable(value):
            value = await value
        return Substituted(value, "fallback")

    return substituted


def _apply_adaptive(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    options = dict(o)
    if "algorithm" in options:
        options["algorithm"] = options["algorithm"]()
    limiter = ar.AdaptiveLimiter(**options)
    built.limiters.append(limiter)
    b.adaptive_limit(limiter)


def _apply_load_shed(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    options = dict(o)
    signal = options.pop("signal", "in_flight")
    capacity = options.pop("capacity", 100)
    priority = options.pop("priority", ar.Priority.NORMAL)
    if signal == "in_flight":
        # The client's calls in flight as a share of `capacity`, the one being decided left
        # out (it is in flight from its arrival): as the library's InFlight fed by a shedder,
        # which counts the calls it admitted, and so with capacity = 1 a lone call goes.
        signal = lambda: (env.in_flight - 1) / capacity  # noqa: E731
    elif "capacity" in o:
        raise ValueError(
            "capacity scales the in_flight signal only; a signal of one's own scales itself"
        )
    shedder = ar.LoadShedder(signal, **options)
    b.load_shed(shedder, priority)


def _apply_hedge(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    options = dict(o)
    if "budget" in options:
        options["budget"] = options["budget"]()
    b.hedge(**options)


def _apply_chaos_fault(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    b.chaos_fault(o.get("rate", 0.0), fault=o.get("fault"), enabled=o.get("enabled", True))


def _apply_chaos_latency(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    b.chaos_latency(o.get("rate", 0.0), o.get("latency", 0.0), enabled=o.get("enabled", True))


def _apply_chaos_outcome(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    value = Substituted(o.get("value", "chaos"), "chaos_outcome")
    b.chaos_outcome(o.get("rate", 0.0), value, enabled=o.get("enabled", True))


def _apply_chaos_behavior(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    if "behavior" not in o:
        raise ValueError("chaos_behavior needs behavior, an import path of a coroutine function")
    b.chaos_behavior(o.get("rate", 0.0), o["behavior"], enabled=o.get("enabled", True))


def _apply_add(
    b: ar.PipelineBuilder, env: Environment, built: BuiltPipeline, o: Mapping[str, Any]
) -> None:
    factory = o.get("factory")
    if factory is None or not callable(factory):
        raise ValueError(
            "add needs factory, an import path of a callable returning a Strategy "
            f"(called once per run), got {factory!r}"
        )
    b.add(factory())


_APPLY: dict[str, Callable[[ar.PipelineBuilder, Environment, BuiltPipeline, Any], None]] = {
    "timeout": _apply_timeout,
    "rate_limit": _apply_rate_limit,
    "retry": _apply_retry,
    "circuit_breaker": _apply_breaker,
    "bulkhead": _apply_bulkhead,
    "fallback": _apply_fallback,
    "adaptive_limit": _apply_adaptive,
    "load_shed": _apply_load_shed,
    "hedge": _apply_hedge,
    "chaos_fault": _apply_chaos_fault,
    "chaos_latency": _apply_chaos_latency,
    "chaos_outcome": _apply_chaos_outcome,
    "chaos_behavior": _apply_chaos_behavior,
    "add": _apply_add,
}


@dataclass(frozen=True)
class Variant:
    """One client configuration compared in a scenario."""

    name: str
    description: str
    steps: tuple[_Step, ...]

    def build(self, seed: int, env: Environment) -> BuiltPipeline:
        """A fresh pipeline (fresh breakers, limiters, budgets) seeded with ``seed``."""
        builder = ar.Pipeline.builder(self.name, seed=seed)
        built = _empty_built()
        for step in self.steps:
            step.apply(builder, env, built)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ar.PipelineOrderWarning)
            built.pipeline = builder.build()
        built.warnings = [str(w.message) for w in caught]
        return built

    def describe(self) -> list[dict[str, Any]]:
        """The pipeline as JSON-safe data: ``pipeline.describe()`` of a fresh build."""
        return [_json_safe(d) for d in self.build(0, Environment()).pipeline.describe()]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


@dataclass(frozen=True)
class Answer:
    """How the scenario's answer sentence is measured: ``kind`` names the measurement
    (:mod:`aioresilience.sim._answers`), ``variants`` the variants it compares."""

    kind: str
    variants: Mapping[str, str]


@dataclass(frozen=True)
class Scenario:
    """A validated scenario, ready to run (see :func:`aioresilience.sim.run_scenario`)."""

    name: str
    question: str
    seed: int
    duration: float
    interval: float
    drain: float
    arrivals: ArrivalSpec
    dependency: DependencySpec
    variants: tuple[Variant, ...]
    answer: Answer
    source: str
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def replace(self, **changes: Any) -> Scenario:
        """A copy with ``changes`` (``seed``, ``duration``, ``arrivals``...), checked again."""
        seed = changes.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ScenarioError(f"seed must be an integer >= 0, got {seed!r}")
        for key in ("duration", "interval", "drain"):
            if key in changes:
                try:
                    changes[key] = parse_duration(key, changes[key])
                except (ValueError, OverflowError) as exc:
                    raise ScenarioError(str(exc)) from None
        changed = dataclasses.replace(self, **changes)
        if not math.isfinite(changed.arrivals.max_rate()):
            raise ScenarioError(
                f"the arrival rate overflows: {changed.arrivals.rate:g}/s with its bursts and "
                "diurnal curve is not a finite rate"
            )
        too_many = _too_many_arrivals(changed.arrivals, changed.duration)
        if too_many:
            raise ScenarioError(too_many)
        if "duration" in changes and "interval" not in changes and "interval" not in self.raw:
            changed = dataclasses.replace(changed, interval=_default_interval(changed.duration))
        if not changed.duration > 0 or not math.isfinite(changed.duration):
            raise ScenarioError(f"duration must be > 0 and finite, got {changed.duration:g}s")
        if changed.interval > changed.duration:
            raise ScenarioError(
                f"interval {changed.interval:g}s must not exceed duration ({changed.duration:g}s)"
            )
        if changed.duration / changed.interval > _MAX_INTERVALS:
            raise ScenarioError(
                f"at most {_MAX_INTERVALS:,} intervals: {changed.duration:g}s in intervals of "
                f"{changed.interval:g}s is more (set a longer interval in the file)"
            )
        return changed

    def to_json(self) -> dict[str, Any]:
        """The ``scenario`` object of the result."""
        return {
            "name": self.name,
            "question": self.question,
            "seed": self.seed,
            "duration_s": self.duration,
            "interval_s": self.interval,
            "source": self.source,
            "arrivals": _json_safe(self.arrivals.to_json()),
            "dependency": _json_safe(self.dependency.to_json()),
        }


#: Arrivals at the peak rate over the run: a bound keeps a typo (rate = 1e300) from a run that
#: never ends (past ulp(t) > 1/rate virtual time would stop) and from one that takes days.
_MAX_ARRIVALS = 1e9


def _too_many_arrivals(arrivals: ArrivalSpec, duration: float) -> str | None:
    """What is wrong when open-loop arrivals at their peak rate, or closed-loop users at most
    one call per think time each, exceed the bound, else None."""
    if arrivals.kind == "closed":
        if arrivals.users / arrivals.think * duration <= _MAX_ARRIVALS:
            return None
        return (
            f"at most {_MAX_ARRIVALS:,.0f} arrivals: {arrivals.users} users thinking "
            f"{arrivals.think:g}s (up to {arrivals.users / arrivals.think:g}/s) for "
            f"{duration:g}s is more"
        )
    if arrivals.max_rate() * duration <= _MAX_ARRIVALS:
        return None
    return (
        f"at most {_MAX_ARRIVALS:,.0f} arrivals: {arrivals.rate:g}/s (at its peak "
        f"{arrivals.max_rate():g}/s) for {duration:g}s is more"
    )


#: The series keep one value per interval: a bound on their length keeps memory bounded.
_MAX_INTERVALS = 100_000


def _default_interval(duration: float) -> float:
    """One interval per second, coarser for long runs: at most 600 intervals, so the series
    (and the memory they take) stay the same size however long the run; a run shorter than a
    second is one interval."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if duration / step <= 600:
            return min(float(step), duration)
    return duration / 600


#: Each kind of answer (aioresilience.sim._answers): the variant roles it needs, and the ones
#: it also reads when they are named (``None``: any name, as the overload's answer compares
#: every variant it is given under the labels given). A key no kind reads is refused, so a
#: misspelt role cannot quietly leave a variant out of the answer.
ANSWER_ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "outage": (("baseline", "candidate"), ()),
    "latency-spike": (("baseline",), ("timeout", "hedge")),
    "overload": (("baseline",), None),
    "quota": (("baseline", "candidate"), ()),
    "thundering-herd": (("baseline", "candidate"), ()),
    "compare": ((), ()),
}


def _scenario(data: dict[str, Any], source: str, default_name: str) -> Scenario:
    r = _Reader(data, (), "the scenario")
    r.known(
        (
            "name",
            "question",
            "seed",
            "duration",
            "interval",
            "drain",
            "arrivals",
            "dependency",
            "variants",
            "answer",
        )
    )
    duration = r.get("duration", _positive_duration, 600.0)
    interval = r.get("interval", _positive_duration, _default_interval(duration))
    if interval > duration:
        raise _Invalid(("interval",), f"interval must not exceed duration ({duration:g}s)")
    if duration / interval > _MAX_INTERVALS:
        raise _Invalid(
            ("interval",),
            f"at most {_MAX_INTERVALS:,} intervals: {duration:g}s in intervals of {interval:g}s "
            "is more",
        )
    arrivals = _arrivals(_Reader(data.get("arrivals", {}), ("arrivals",), "[arrivals]"))
    too_many = _too_many_arrivals(arrivals, duration)
    if too_many:
        if arrivals.kind == "closed":
            where = ("arrivals", "think")
        else:
            where = ("arrivals", "bursts") if arrivals.bursts else ("arrivals", "rate")
        raise _Invalid(where, too_many)
    dependency = _dependency(_Reader(data.get("dependency", {}), ("dependency",), "[dependency]"))
    raw_variants = data.get("variants")
    if not isinstance(raw_variants, list) or not raw_variants:
        raise _Invalid(("variants",), "at least one [[variants]] table is needed")
    variants: list[Variant] = []
    for i, raw in enumerate(raw_variants):
        v = _Reader(raw, ("variants", i), f"variants[{i}]")
        v.known(("name", "description", "pipeline"))
        name = v.require("name", _str)
        if any(existing.name == name for existing in variants):
            raise _Invalid(v.at("name"), f"two variants are named {name!r}")
        steps = v.get("pipeline", functools.partial(_steps, v), ())
        variants.append(Variant(name, v.get("description", _str, ""), steps))
    names = [variant.name for variant in variants]
    answer_data = data.get("answer", {"kind": "compare"})
    a = _Reader(answer_data, ("answer",), "[answer]")
    kind = a.get("kind", _choice(*ANSWER_ROLES), "compare")
    needed, optional = ANSWER_ROLES[kind]
    if optional is not None:
        a.known(("kind", *needed, *optional))
    for role in needed:
        if role not in a.data:
            raise _Invalid(a.path, f"an answer of kind {kind!r} needs {role} = <a variant's name>")
    roles = {}
    for key, value in a.data.items():
        if key == "kind":
            continue
        if value not in names:
            raise _Invalid(
                a.at(key), f"{key} must name a variant ({', '.join(names)}), got {value!r}"
            )
        roles[key] = value
    return Scenario(
        name=r.get("name", _str, default_name),
        question=r.get("question", _str, f"How do the variants of {default_name} compare?"),
        seed=r.get("seed", _int, 0),
        duration=duration,
        interval=interval,
        drain=r.get("drain", parse_duration, 60.0),
        arrivals=arrivals,
        dependency=dependency,
        variants=tuple(variants),
        answer=Answer(kind, roles),
        source=source,
        raw=data,
    )


def _steps(variant: _Reader, name: str, value: Any) -> tuple[_Step, ...]:
    return _tables(name, value, variant.at(name), _step)


def _parse(text: str, where: str, source: str, default_name: str) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{where}: not valid TOML: {exc}") from None
    try:
        return _scenario(data, source, default_name)
    except _Invalid as exc:
        line = locate(text, exc.path)
        key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in exc.path)
        key = key.replace(".[", "[") or "(top level)"
        at = f"{where}:{line}" if line is not None else where
        raise ScenarioError(f"{at}: {key}: {exc.message}") from None


_SCENARIOS = "aioresilience.sim.scenarios"


def builtin_names() -> list[str]:
    """The built-in scenarios, by name (the TOML files shipped in the package)."""
    folder = resources.files(_SCENARIOS)
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name (``"outage"``) or a TOML file by path."""
    text_name = str(name_or_path)
    if isinstance(name_or_path, str) and text_name in builtin_names():
        resource = resources.files(_SCENARIOS) / f"{text_name}.toml"
        text = resource.read_text(encoding="utf-8")
        return _parse(text, f"{text_name}.toml (built-in)", f"builtin:{text_name}", text_name)
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        known = ", ".join(builtin_names())
        close = difflib.get_close_matches(text_name, builtin_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ScenarioError(
            f"unknown scenario {text_name!r}{hint}: give a built-in ({known}) or a .toml file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read it: {exc.strerror}") from None
    # A callable's import path may name a module beside the file (as `python file.py` finds
    # its neighbours): the folder comes first on sys.path while the file is read.
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        return _parse(text, str(path), str(path), path.stem)
    finally:
        sys.path.remove(folder)

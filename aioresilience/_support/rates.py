"""Parse human rates such as ``"100/minute"``, ``"10/s"``, ``"5 per 2 seconds"``."""

from __future__ import annotations

import re

__all__ = ["parse_rate"]

_UNITS = {
    "ms": 0.001,
    "millisecond": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE = re.compile(
    r"^\s*(?P<count>\d+)\s*(?:/|per)\s*(?P<multiple>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)\s*$",
    re.IGNORECASE,
)


def _unit(word: str) -> float | None:
    """Seconds in a unit: exact names first ("ms", "s"), then plurals ("minutes")."""
    word = word.lower()
    if word in _UNITS:
        return _UNITS[word]
    return _UNITS.get(word[:-1]) if word.endswith("s") else None


def parse_rate(name: str, text: object) -> tuple[int, float]:
    """Return ``(count, period_seconds)`` for a rate string, naming ``name`` in errors."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a rate string like '100/minute', got {text!r}")
    match = _RATE.match(text)
    unit = _unit(match["unit"]) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"{name} must look like '100/minute', '10/s' or '5 per 2 seconds', got {text!r}"
        )
    count = int(match["count"])
    period = float(match["multiple"] or 1) * unit
    if count < 1 or period <= 0:
        raise ValueError(f"{name} must have a count >= 1 and a period > 0, got {text!r}")
    return count, period

"""Construction-time checks: a bad value fails when the object is built (DESIGN rule 5).

Every message names the parameter and the value it was given. What every numeric helper
refuses, whatever its bounds: ``bool`` (``True`` is not a number here), anything that is not
an ``int`` or ``float``, NaN, and ints beyond float range (``10**400``: they would raise
OverflowError at first use instead). The bounds say the rest:

- ``finite_positive`` / ``non_negative`` / ``non_negative_or_none``: durations and ratios;
- ``divisor``: a value the code divides by (a rate, a period, a window): it refuses what is
  so small that its reciprocal, in nanoseconds, leaves float range (``5e-324``, ``1e-300``);
- ``positive_int`` / ``non_negative_int``: counts, with an optional ``maximum`` for counts that
  allocate (workers, slots);
- ``text``: names; ``one_of``: a choice among strings; ``fraction``: a probability.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "MAX_DIVISOR",
    "MIN_DIVISOR",
    "aliased",
    "divisor",
    "finite_positive",
    "fraction",
    "http_token",
    "non_negative",
    "non_negative_int",
    "non_negative_or_none",
    "number",
    "one_of",
    "positive_int",
    "shared_store_binder",
    "text",
]

# A value divided by, then scaled to nanoseconds, must stay a finite float both ways: 1e-12
# (a picosecond, or one event per 31,700 years as a rate) down to 1e12 up keeps
# ``1e9 / value`` and ``value * 1e9`` far inside float range and above float's resolution.
MIN_DIVISOR = 1e-12
MAX_DIVISOR = 1e12


def aliased(name: str, value: Any, alias: str, alias_value: Any) -> tuple[str, Any]:
    """An option with a second name (the seed guide's): the name given and its value (``name``
    and ``value`` when the alias is not given, None meaning "not given"); both is a TypeError."""
    if alias_value is None:
        return name, value
    if value is not None:
        raise TypeError(
            f"{alias} is another name for {name}: give one of them, got "
            f"{name}={_show(value)} and {alias}={_show(alias_value)}"
        )
    return alias, alias_value


def _kind(value: Any) -> str:
    return type(value).__name__


def _show(value: Any) -> str:
    """``repr(value)``, but a huge int (``10**400``) as its first digits and its length."""
    text = repr(value)
    if isinstance(value, int) and len(text) > 40:
        return f"{text[:12]}... (an int of {len(text.lstrip('-'))} digits)"
    return text


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float(name: str, value: Any, what: str) -> float:
    if not _is_number(value):
        raise TypeError(f"{name} must be {what}, got {_show(value)} ({_kind(value)})")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} must be within float range, got {_show(value)}") from None


def number(name: str, value: Any, *, what: str = "a number") -> float:
    """``value`` as a float: an int or float, not a bool, not NaN, within float range
    (``inf`` passes; the callers' bounds decide about it)."""
    result = _float(name, value, what)
    if math.isnan(result):
        raise ValueError(f"{name} must be {what}, got {_show(value)}")
    return result


def finite(name: str, value: Any, *, what: str = "a finite number") -> float:
    """``value`` as a float: :func:`number`, and not infinite either."""
    result = number(name, value, what=what)
    if math.isinf(result):
        raise ValueError(f"{name} must be {what}, got {_show(value)}")
    return result


def finite_positive(
    name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    """A finite number > 0 (and within ``minimum``..``maximum`` when given), as float."""
    result = _float(name, value, "a number")
    if not 0 < result < math.inf:  # NaN fails this too
        raise ValueError(f"{name} must be a positive finite number, got {_show(value)}")
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {_show(value)}")
    if maximum is not None and result > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {_show(value)}")
    return result


def divisor(name: str, value: Any) -> float:
    """A finite positive number the code divides by (a rate, a period, a window length):
    between ``MIN_DIVISOR`` and ``MAX_DIVISOR``, so neither it nor its reciprocal, in
    seconds or in nanoseconds, overflows or rounds to zero."""
    return finite_positive(name, value, minimum=MIN_DIVISOR, maximum=MAX_DIVISOR)


def non_negative(name: str, value: Any, *, maximum: float | None = None) -> float:
    """A finite number >= 0 (and <= ``maximum`` when given), as float."""
    result = _float(name, value, "a number")
    if not 0 <= result < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {_show(value)}")
    if maximum is not None and result > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {_show(value)}")
    return result


def non_negative_or_none(name: str, value: Any) -> float | None:
    """``None`` (no bound), or a number >= 0; ``inf`` means no bound as well."""
    if value is None:
        return None
    result = _float(name, value, "a number or None")
    if not result >= 0:
        raise ValueError(f"{name} must be >= 0 or None, got {_show(value)}")
    return None if math.isinf(result) else result


def fraction(name: str, value: Any, *, zero: bool = True) -> float:
    """A probability: 0 (when ``zero``) or more, up to 1."""
    result = _float(name, value, "a number")
    if not (0 <= result <= 1) or (result == 0 and not zero):
        bounds = "[0, 1]" if zero else "(0, 1]"
        raise ValueError(f"{name} must be in {bounds}, got {_show(value)}")
    return result


def positive_int(name: str, value: Any, *, maximum: int | None = None) -> int:
    """An ``int`` >= 1, at most ``maximum`` when given (bools are refused: ``True`` is not a
    count)."""
    return _int_at_least(name, value, 1, maximum)


def non_negative_int(name: str, value: Any, *, maximum: int | None = None) -> int:
    """An ``int`` >= 0, at most ``maximum`` when given (no bools)."""
    return _int_at_least(name, value, 0, maximum)


def _int_at_least(name: str, value: Any, low: int, maximum: int | None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {_show(value)} ({_kind(value)})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {_show(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {_show(value)}")
    return value


def text(name: str, value: Any, *, optional: bool = False) -> Any:
    """A ``str`` (or ``None`` when ``optional``): names, labels."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        wanted = "a str or None" if optional else "a str"
        raise TypeError(f"{name} must be {wanted}, got {_show(value)} ({_kind(value)})")
    return value


def one_of(name: str, value: Any, choices: Iterable[str]) -> str:
    """One of ``choices`` (strings), as given."""
    options = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {options!r}, got {_show(value)} ({_kind(value)})")
    if value not in options:
        raise ValueError(f"{name} must be one of {options!r}, got {_show(value)}")
    return value


def number_in(name: str, value: Any, low: float, high: float, *, integer: bool = False) -> Any:
    """A number in ``[low, high]`` (an ``int`` when ``integer``; a ``float`` otherwise).

    Bools are not numbers. The range test compares exactly (Python compares ints and floats
    without converting), so NaN, an int beyond float range and a denormal below ``low`` are
    all ValueErrors naming the parameter, never an OverflowError later."""
    if integer:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    elif not _is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not low <= value <= high:  # NaN fails both comparisons
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    return value if integer else float(value)


def shared_store_binder(store: Any, method: str, alone: str) -> Any:
    """``store``'s ``method`` that binds a primitive to it, or a TypeError naming what a
    shared store is (``alone``: what ``None`` means for this primitive)."""
    bind = getattr(store, method, None)
    if not callable(bind):
        raise TypeError(
            "store must be a shared store such as aioresilience.stores.redis.RedisStore "
            f"(or None for {alone}), got {store!r}"
        )
    return bind


def checked_seed(value: Any) -> int | None:
    """A ``seed=`` for ``random.Random``: an int or None (a float NaN would seed from its
    address, a different sequence in every process; a bool or 1.5 is no seed either)."""
    if value is not None:
        number_in("seed", value, -math.inf, math.inf, integer=True)
    return value  # type: ignore[no-any-return]


def number_or_none(name: str, value: Any) -> float | None:
    """``None``, or a number of either sign as a float (``inf`` and ``-inf`` pass; the caller
    decides what they mean); NaN, bools and integers beyond float range are refused."""
    return None if value is None else number(name, value, what="a number or None")


_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def http_token(value: object) -> bool:
    """Whether ``value`` is an HTTP token (RFC 9110 §5.6.2): a field name, a method such as
    ``M-SEARCH``."""
    return isinstance(value, str) and _HTTP_TOKEN.fullmatch(value) is not None

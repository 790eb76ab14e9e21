"""Construction-time checks: a bad value fails when the object is built (DESIGN rule 5).

Every message names the parameter and the value it was given.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["finite_positive", "non_negative_or_none", "positive_int", "shared_store_binder"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def finite_positive(name: str, value: Any, *, minimum: float | None = None) -> float:
    """A finite number > 0 (and >= ``minimum`` when given), returned as float."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    return float(value)


def positive_int(name: str, value: Any) -> int:
    """An ``int`` >= 1 (bools are refused: ``True`` is not a count)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def non_negative_or_none(name: str, value: Any) -> float | None:
    """``None`` (no bound), or a number >= 0; ``inf`` means no bound as well."""
    if value is None:
        return None
    if not _is_number(value):
        raise TypeError(f"{name} must be a number or None, got {value!r} ({type(value).__name__})")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 or None, got {value!r}")
    return None if math.isinf(value) else float(value)


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


def number_or_none(name: str, value: Any) -> float | None:
    """``None``, or a number of either sign as a float (``inf`` and ``-inf`` pass; the caller
    decides what they mean); NaN, bools and integers beyond float range are refused."""
    if value is None:
        return None
    if not _is_number(value):
        raise TypeError(f"{name} must be a number or None, got {value!r} ({type(value).__name__})")
    try:
        result = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be within float range, got {value!r}") from None
    if math.isnan(result):
        raise ValueError(f"{name} must be a number or None, got {value!r}")
    return result

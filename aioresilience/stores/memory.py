"""Per-key state in process memory: :class:`MemoryStore`, the default state of every limiter.

The structure itself, and exactly what ``max_keys`` and ``period`` guarantee, live in
:mod:`aioresilience._core.keystore` (pure: the limiters build on it without importing
``stores``); this public class adds the construction checks.
"""

from __future__ import annotations

from typing import TypeVar

from .._core.keystore import MAX_KEYS, KeyStore
from .._support.validation import finite_positive, positive_int

S = TypeVar("S")

__all__ = ["MAX_KEYS", "MemoryStore"]


class MemoryStore(KeyStore[S]):
    """Bounded per-key state for one limiter (see :mod:`aioresilience._core.keystore` for what
    ``max_keys`` and ``period`` guarantee), its arguments checked."""

    __slots__ = ()

    def __init__(self, *, max_keys: int = 100_000, period: float = 60.0) -> None:
        super().__init__(
            max_keys=positive_int("max_keys", max_keys, maximum=MAX_KEYS),
            period=finite_positive("period", period),
        )

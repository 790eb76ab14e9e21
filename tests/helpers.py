"""Helpers shared by several test modules."""

from __future__ import annotations

from typing import Any


def burst(algorithm: Any, now: float, n: int) -> tuple[list[bool], Any]:
    """Ask a pure rate-limit algorithm for one unit ``n`` times at ``now``: which were
    admitted, and the state after."""
    state = None
    admitted = []
    for _ in range(n):
        new, _at, ok = algorithm.reserve(state, now, 1, 0.0)
        if ok:
            state = new
        admitted.append(ok)
    return admitted, state

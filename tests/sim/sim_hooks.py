"""Python callables that tests/sim/everything.toml names by import path ("sim_hooks:..."):
this module sits beside the scenario file, which is how the file finds it. Each counts its
calls in ``CALLS``, so the test can tell the simulator really called it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import aioresilience as ar

CALLS: Counter[str] = Counter()


def never(result: Any) -> bool:
    CALLS["never"] += 1
    return False


def no_hint(outcome: Any) -> float | None:
    CALLS["no_hint"] += 1
    return None


def before_sleep(state: ar.RetryState) -> None:
    CALLS["before_sleep"] += 1


def on_give_up(state: ar.RetryState) -> None:
    CALLS["on_give_up"] += 1


def state_changed(change: Any) -> None:
    CALLS["state_changed"] += 1


def fallback_used(event: Any) -> None:
    CALLS["fallback_used"] += 1


def from_cache(outcome: Any) -> str:
    """A fallback handler that misses every other time (the next handler answers then)."""
    CALLS["from_cache"] += 1
    if CALLS["from_cache"] % 2:
        raise LookupError("not cached")
    return "from cache"


class InjectedFault(Exception):
    """chaos_fault's ``fault``: the class is the factory of the exceptions raised."""


def load() -> float:
    """load_shed's own ``signal``: never high enough to shed."""
    CALLS["load"] += 1
    return 0.0


def acceptable(result: Any) -> bool:
    CALLS["acceptable"] += 1
    return True


def one_key(context: Any) -> str:
    CALLS["one_key"] += 1
    return "everyone"


async def behave() -> None:
    CALLS["behave"] += 1


class Counting(ar.Strategy):
    """A custom guard: counts the calls it lets through."""

    kind = "counting"

    def core(self) -> Any:
        return self._enter, None

    def _enter(self) -> None:
        CALLS["counting"] += 1


def counting() -> Counting:
    CALLS["counting_built"] += 1
    return Counting("counting")

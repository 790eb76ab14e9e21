"""Chaos injection: faults, latency, substituted outcomes and behaviours, on purpose.

Every injection has a ``rate`` (probability per call), an ``enabled`` switch (a bool, or a
callable read on every call — per request, per environment variable...) and a seeded random
source, so a chaotic run can be replayed exactly.
"""

from __future__ import annotations

import asyncio
import functools
import random as _random
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from ._errors import ChaosFault
from ._events import EventSource, Severity
from ._predicates import require_async
from ._validation import finite_positive

__all__ = ["ChaosFault", "ChaosMonkey", "chaos_rate", "chaos_switch"]

P = ParamSpec("P")
T = TypeVar("T")


def chaos_rate(name: str, value: Any) -> float:
    """A probability in [0, 1]."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def chaos_switch(enabled: Any) -> Callable[[], bool]:
    """``enabled`` as a callable: a bool becomes a constant."""
    if isinstance(enabled, bool):
        return (lambda: True) if enabled else (lambda: False)
    if callable(enabled):
        return enabled  # type: ignore[no-any-return]
    raise TypeError(f"enabled must be a bool or a callable returning one, got {enabled!r}")


class ChaosMonkey(EventSource):
    """The seed guide's chaos monkey, seeded and switchable.

    ``maybe_fail()`` raises :class:`ChaosFault` with probability ``failure_rate``;
    ``await add_latency()`` sleeps ``latency`` seconds (a number, or a ``(low, high)`` range)
    with probability ``latency_rate``; ``kill_connection()`` raises ``ConnectionResetError``
    with probability ``kill_rate``. ``@monkey`` applies all three before each call.
    """

    def __init__(
        self,
        *,
        failure_rate: float = 0.1,
        latency_rate: float = 0.0,
        latency: float | tuple[float, float] = 0.1,
        kill_rate: float = 0.0,
        enabled: bool | Callable[[], bool] = True,
        seed: int | None = None,
    ) -> None:
        self.failure_rate = chaos_rate("failure_rate", failure_rate)
        self.latency_rate = chaos_rate("latency_rate", latency_rate)
        self.kill_rate = chaos_rate("kill_rate", kill_rate)
        if isinstance(latency, tuple):
            low, high = latency
            finite_positive("latency", high)
            if not 0 <= low <= high:
                raise ValueError(f"latency range must satisfy 0 <= low <= high, got {latency!r}")
            self.latency = (float(low), float(high))
        else:
            value = finite_positive("latency", latency)
            self.latency = (value, value)
        self._enabled = chaos_switch(enabled)
        self._random = _random.Random(seed)
        self.injected = {"fault": 0, "latency": 0, "kill": 0}
        self._events = None
        self.name = "ChaosMonkey"

    @property
    def enabled(self) -> bool:
        return bool(self._enabled())

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._enabled() and self._random.random() < rate

    def maybe_fail(self) -> None:
        if self._roll(self.failure_rate):
            self.injected["fault"] += 1
            self._emit("chaos_injected", Severity.INFO, injection="fault")
            raise ChaosFault("chaos: injected failure")

    async def add_latency(self) -> None:
        if self._roll(self.latency_rate):
            self.injected["latency"] += 1
            self._emit("chaos_injected", Severity.INFO, injection="latency")
            low, high = self.latency
            await asyncio.sleep(self._random.uniform(low, high))

    def kill_connection(self) -> None:
        if self._roll(self.kill_rate):
            self.injected["kill"] += 1
            self._emit("chaos_injected", Severity.INFO, injection="kill")
            raise ConnectionResetError("chaos: connection killed")

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        require_async("ChaosMonkey", fn)

        @functools.wraps(fn)
        async def chaotic(*args: P.args, **kwargs: P.kwargs) -> T:
            await self.add_latency()
            self.kill_connection()
            self.maybe_fail()
            return await fn(*args, **kwargs)

        return chaotic

    def __repr__(self) -> str:
        return (
            f"<ChaosMonkey enabled={self.enabled} failure_rate={self.failure_rate:g} "
            f"latency_rate={self.latency_rate:g} kill_rate={self.kill_rate:g} "
            f"injected={self.injected}>"
        )

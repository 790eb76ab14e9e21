"""Chaos injection: faults, latency, substituted outcomes and behaviours, on purpose.

Every injection has a ``rate`` (probability per call), an ``enabled`` switch (a bool, or a
callable read on every call — per request, per environment variable...) and a seeded random
source, so a chaotic run can be replayed exactly.

Two forms: :class:`ChaosMonkey` (the seed guide's: explicit calls, or a guard for a decorator,
``async with`` and ``call``), and the pipeline's chaos strategies, built by
``PipelineBuilder.chaos_fault`` / ``chaos_latency`` / ``chaos_behavior`` (:class:`ChaosGuard`:
they act before the call only) and ``chaos_outcome`` (:class:`ChaosOutcome`: it replaces the
call).
"""

from __future__ import annotations

import copy
import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from types import CoroutineType
from typing import Any, ClassVar, ParamSpec, TypeVar

from ._support.clock import Clock, clock_option
from ._support.compose import Call, Core, Strategy
from ._support.context import ResilienceContext
from ._support.errors import ChaosFault
from ._support.events import EventSource, ResilienceEvent, Severity, emit
from ._support.guard import GuardForms, isawaitable
from ._support.predicates import sync_callable
from ._support.validation import checked_seed, finite_positive, non_negative, number

__all__ = [
    "ChaosFault",
    "ChaosGuard",
    "ChaosInjected",
    "ChaosMonkey",
    "ChaosOutcome",
    "chaos_latency_range",
    "chaos_rate",
    "chaos_strategy",
    "chaos_switch",
]

P = ParamSpec("P")
T = TypeVar("T")


def chaos_rate(name: str, value: Any) -> float:
    """A probability in [0, 1]."""
    rate = number(name, value, what="a probability in [0, 1]")
    if not 0 <= rate <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return rate


def chaos_latency_range(name: str, value: Any) -> tuple[float, float]:
    """Seconds of injected latency: a number > 0, or a ``(low, high)`` range with
    ``0 <= low <= high``, ``high > 0``; finite."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
        low = non_negative(f"{name} low", value[0])
        high = finite_positive(f"{name} high", value[1])
        if low > high:
            raise ValueError(f"{name} range must satisfy 0 <= low <= high, got {value!r}")
        return low, high
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a (low, high) pair, got {value!r}")
    seconds = finite_positive(name, value)
    return seconds, seconds


def chaos_switch(enabled: Any) -> Callable[[], bool]:
    """``enabled`` as a callable: a bool becomes a constant."""
    if isinstance(enabled, bool):
        return (lambda: True) if enabled else (lambda: False)
    if callable(enabled):
        return sync_callable("enabled", enabled)  # type: ignore[no-any-return]
    raise TypeError(f"enabled must be a bool or a callable returning one, got {enabled!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosInjected(ResilienceEvent):
    """Chaos was injected: ``injection`` names what (``fault``, ``latency``, ``kill``, or the
    pipeline chaos strategy's kind)."""

    name: ClassVar[str] = "chaos_injected"
    severity: ClassVar[Severity] = Severity.INFO

    injection: str


class ChaosMonkey(GuardForms, EventSource):
    """The seed guide's chaos monkey, seeded and switchable.

    ``maybe_fail(error_message=None)`` raises :class:`ChaosFault` with probability
    ``failure_rate``; ``await add_latency(min_seconds=None, max_seconds=None)`` sleeps
    ``latency`` seconds (a number, or a ``(low, high)`` range; the seed's ``min_seconds`` and
    ``max_seconds`` override its ends for that call) with probability ``latency_rate``;
    ``kill_connection()`` raises ``ConnectionResetError``
    with probability ``kill_rate``. ``@monkey``, ``async with monkey:``, and ``await
    monkey.call(fn, ...)`` apply all three before the call (latency first), from one core.
    """

    def __init__(
        self,
        failure_rate: float = 0.1,
        latency_rate: float = 0.0,
        *,
        latency: float | tuple[float, float] = 0.1,
        kill_rate: float = 0.0,
        enabled: bool | Callable[[], bool] = True,
        seed: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.failure_rate = chaos_rate("failure_rate", failure_rate)
        self._clock = clock_option("clock", clock)  # the injected latency sleeps on it
        self.latency_rate = chaos_rate("latency_rate", latency_rate)
        self.kill_rate = chaos_rate("kill_rate", kill_rate)
        self.latency = chaos_latency_range("latency", latency)
        self._enabled = chaos_switch(enabled)
        checked_seed(seed)
        self._random = _random.Random(seed)
        self.injected = {"fault": 0, "latency": 0, "kill": 0}
        self._events = None
        self.name = "ChaosMonkey"

    @property
    def enabled(self) -> bool:
        return bool(self._enabled())

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._enabled() and self._random.random() < rate

    def maybe_fail(self, error_message: str | None = None) -> None:
        """Raise :class:`ChaosFault` (with ``error_message``, the seed's parameter, when
        given) with probability ``failure_rate``."""
        if error_message is not None and not isinstance(error_message, str):
            raise TypeError(f"error_message must be a str or None, got {error_message!r}")
        if self._roll(self.failure_rate):
            self.injected["fault"] += 1
            self._emit(ChaosInjected, injection="fault")
            raise ChaosFault(error_message or "chaos: injected failure")

    async def add_latency(
        self, min_seconds: float | None = None, max_seconds: float | None = None
    ) -> None:
        """Sleep a uniform draw from the latency range with probability ``latency_rate``;
        ``min_seconds`` / ``max_seconds`` (the seed's parameters) replace its ends."""
        low, high = self.latency
        if min_seconds is not None or max_seconds is not None:
            low = low if min_seconds is None else non_negative("min_seconds", min_seconds)
            high = high if max_seconds is None else non_negative("max_seconds", max_seconds)
            if low > high:
                raise ValueError(f"need min_seconds <= max_seconds, got {low!r} and {high!r}")
        if self._roll(self.latency_rate):
            self.injected["latency"] += 1
            self._emit(ChaosInjected, injection="latency")
            await self._clock.sleep(self._random.uniform(low, high))

    def kill_connection(self) -> None:
        if self._roll(self.kill_rate):
            self.injected["kill"] += 1
            self._emit(ChaosInjected, injection="kill")
            raise ConnectionResetError("chaos: connection killed")

    # -- the guard's core (GuardForms): `@monkey`, `async with monkey`, `monkey.call(fn)` and
    # a pipeline's `.guard(monkey)` all inject the same way: latency, then a killed
    # connection, then a fault, before the call; nothing after it.

    def _enter(self) -> Any:
        if self._roll(self.latency_rate):
            return self._delayed_strike()
        self._strike()
        return None

    async def _delayed_strike(self) -> None:
        self.injected["latency"] += 1
        self._emit(ChaosInjected, injection="latency")
        low, high = self.latency
        await self._clock.sleep(self._random.uniform(low, high))
        self._strike()

    def _strike(self) -> None:
        self.kill_connection()
        self.maybe_fail()

    def _exit(self, ticket: Any, exc: BaseException | None, result: Any) -> None:
        pass  # chaos acts before the call only

    def __repr__(self) -> str:
        return (
            f"<ChaosMonkey enabled={self.enabled} failure_rate={self.failure_rate:g} "
            f"latency_rate={self.latency_rate:g} kill_rate={self.kill_rate:g} "
            f"injected={self.injected}>"
        )


# -- the pipeline's chaos strategies ----------------------------------------------------------


class _ChaosStrategy(Strategy):
    """What the pipeline's chaos strategies share: ``rate``, the ``enabled`` switch and a
    seeded random source (one per strategy, from the builder's seed)."""

    def __init__(
        self,
        kind: str,
        rate: float,
        enabled: bool | Callable[[], bool],
        rng: _random.Random,
        action: Any,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(kind)
        self._clock = clock_option("clock", clock)  # the injected latency sleeps on it
        self.kind = kind
        self.rate = chaos_rate("rate", rate)
        self._enabled = chaos_switch(enabled)
        self._random = rng
        self._action = action
        self.injected = 0

    def _roll(self) -> bool:
        """Whether to inject this time (counted and announced when it does)."""
        if self.rate > 0 and self._enabled() and self._random.random() < self.rate:
            self.injected += 1
            emit(None, self.name, ChaosInjected, self._clock, injection=self.kind)
            return True
        return False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "rate": self.rate, "injected": self.injected}


class ChaosGuard(_ChaosStrategy):
    """``chaos_fault`` (raise), ``chaos_latency`` (sleep) or ``chaos_behavior`` (run it), then
    the call: they act only before the call, so each is a guard whose ``enter`` returns a
    coroutine only when it sleeps or runs the behaviour."""

    def core(self) -> Core:
        return self._enter, None  # nothing to undo after the call

    def _enter(self) -> Any:
        if not self._roll():
            return None
        action = self._action
        if self.kind == "chaos_fault":
            if isinstance(action, BaseException):
                # A fresh copy each time: re-raising one instance grows its traceback forever.
                raise copy.copy(action).with_traceback(None)
            raise action()
        if self.kind == "chaos_latency":
            low, high = action
            return self._clock.sleep(self._random.uniform(low, high))
        return action()  # chaos_behavior: a coroutine function, checked by the builder


class ChaosOutcome(_ChaosStrategy):
    """``chaos_outcome``: return ``outcome`` (or ``outcome()`` when callable) instead of
    calling; it replaces the call, so it is a strategy around it, not a guard."""

    async def execute(self, call: Call, context: ResilienceContext | None) -> Any:
        if not self._roll():
            result: Any = call()
            if result.__class__ is CoroutineType or isawaitable(result):
                result = await result
            return result
        action = self._action
        return action() if callable(action) else action


def chaos_strategy(
    kind: str,
    rate: float,
    enabled: bool | Callable[[], bool],
    rng: _random.Random,
    action: Any,
    clock: Clock | None = None,
) -> ChaosGuard | ChaosOutcome:
    """The pipeline strategy of chaos ``kind`` (``chaos_fault``, ``chaos_latency``,
    ``chaos_behavior`` or ``chaos_outcome``); injected latency sleeps on ``clock``."""
    if kind == "chaos_outcome":
        return ChaosOutcome(kind, rate, enabled, rng, action, clock)
    if kind in ("chaos_fault", "chaos_latency", "chaos_behavior"):
        return ChaosGuard(kind, rate, enabled, rng, action, clock)
    raise ValueError(f"kind must be a chaos strategy's kind, got {kind!r}")

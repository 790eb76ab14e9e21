"""Client-side adaptive throttling (Google SRE book, "Handling Overload"): refuse calls
locally, with a probability that grows as the backend accepts fewer of them."""

from __future__ import annotations

import random as _random
from dataclasses import dataclass
from typing import Any, ClassVar

from ._core.budget import throttle_probability
from ._core.windows import TimeWindow
from ._support.clock import Clock, clock_option
from ._support.errors import Throttled
from ._support.events import CallRejected, EventSource
from ._support.guard import GuardForms
from ._support.predicates import ExceptionFilter, exception_predicate
from ._support.validation import checked_seed, divisor, finite_positive, text

__all__ = ["AdaptiveThrottle", "ThrottleRejected"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleRejected(CallRejected):
    """The adaptive throttle refused a call locally (the backend was seen overloaded)."""

    name: ClassVar[str] = "throttled"


class AdaptiveThrottle(GuardForms, EventSource):
    """Client-side adaptive throttling (Google SRE book, "Handling Overload").

    Over the last ``window`` seconds, count requests R and those the backend accepted A; refuse
    a call locally, with :class:`Throttled`, with probability ``max(0, (R - k*A) / (R + 1))``.
    Local refusals count in R. A call that raises an exception matching ``overload`` was not
    accepted; cancellations count neither way. ``await throttle.call(fn, ...)``, ``@throttle``
    or ``async with throttle:``.
    """

    def __init__(
        self,
        *,
        k: float = 2.0,
        window: float = 120.0,
        overload: ExceptionFilter = Exception,
        seed: int | None = None,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "AdaptiveThrottle"
        self._clock = clock_option("clock", clock)  # the window's time
        self.k = finite_positive("k", k)
        self._window = TimeWindow(divisor("window", window))
        self._overload = exception_predicate("overload", overload)
        checked_seed(seed)
        self._random = _random.Random(seed).random
        self.throttled = 0
        self._events = None

    def probability(self) -> float:
        """The current chance that a call is refused locally."""
        requests, rejected, _ = self._window.totals(self._clock.time())
        return throttle_probability(requests, requests - rejected, self.k)

    # -- the guard's core (GuardForms builds call, @throttle and async with from it) ---------

    def _enter(self) -> None:
        now = self._clock.time()
        window = self._window
        requests, rejected, _ = window.totals(now)
        if self._random() < throttle_probability(requests, requests - rejected, self.k):
            window.record(now, True, False)
            self.throttled += 1
            self._emit(ThrottleRejected)
            raise Throttled(f"{self.name}: throttled locally", retry_after=None)

    def _exit(self, ticket: None, exc: BaseException | None, result: Any) -> None:
        if exc is None:
            self._window.record(self._clock.time(), False, False)
        elif isinstance(exc, Exception):  # a cancellation counts neither way
            self._window.record(self._clock.time(), self._overload(exc), False)

    def __repr__(self) -> str:
        return f"<AdaptiveThrottle {self.name!r} k={self.k:g} p={self.probability():.3f}>"

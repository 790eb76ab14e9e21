"""Load signals: :class:`InFlight` (calls in progress), :class:`LatencyEWMA` (smoothed call
latency), :class:`EventLoopLag` (how late the loop runs timers), or any callable returning a
number; read by :class:`~aioresilience.GracefulDegradation` and
:class:`~aioresilience.LoadShedder`.

A degradation or a shedder given an :class:`InFlight` or :class:`LatencyEWMA` feeds it with
the calls it runs (a call counts from after the decision to its end), so the signal needs no
``track()`` by hand. A ``track()`` by hand of the same signal in the same task, around or
inside such a call, is not counted a second time.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._support.clock import Clock, clock_option
from ._support.validation import divisor, finite_positive, non_negative

__all__ = ["EventLoopLag", "InFlight", "LatencyEWMA"]


# The signals being fed in the current task: (signal, task, fed by a guard rather than by hand).
_feeding: contextvars.ContextVar[tuple[tuple[object, object, bool], ...]] = contextvars.ContextVar(
    "aioresilience_feeding", default=()
)


# The token of a guard's call that a track() by hand around it already counts.
_COUNTED_AROUND = object()


def _current_task() -> object:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: nothing is being fed
        return None


class _FedSignal:
    """A signal fed around each call: by hand (``with signal.track():``) or by the guard it
    was given to (:class:`LoadShedder`, :class:`GracefulDegradation`). A guard does not feed
    it for a task already tracking it, and a ``track()`` inside a call the guard feeds is not
    counted again: one call, one count. (Nested ``track()`` by hand count as before.)"""

    def _open(self) -> Any:
        raise NotImplementedError

    def _close(self, opened: Any, exc: BaseException | None) -> None:
        raise NotImplementedError

    def _begin(self, by_guard: bool) -> Any:
        """Start feeding for the current call: a token for :meth:`_end`, or None if this
        call is already being fed."""
        task = _current_task()
        feeding = _feeding.get()
        for signal, owner, guarded in feeding:
            if signal is self and owner is task and (guarded or by_guard):
                if guarded:
                    return None
                # Counted by a track() around it: marked as a guard's call all the same, so
                # a track() inside it is not counted again either.
                return _feeding.set((*feeding, (self, task, True))), _COUNTED_AROUND
        return _feeding.set((*feeding, (self, task, by_guard))), self._open()

    def _end(self, token: Any, exc: BaseException | None = None) -> None:
        """End feeding for a call that ended with ``exc`` (None: it returned)."""
        if token is not None:
            _feeding.reset(token[0])
            if token[1] is not _COUNTED_AROUND:
                self._close(token[1], exc)

    def core(self) -> tuple[Callable[[], Any], Callable[[Any, BaseException | None, Any], None]]:
        """The feeding a guard given this signal does around each call it admits, as a
        guard's ``(enter, exit)`` core (:data:`aioresilience.abc.Core`): ``enter()`` starts
        counting the current task's call and returns a token (None when this call is counted
        already, by such a guard or a ``track()`` around it); ``exit(token, exc, result)``
        ends it. For code that runs calls no guard fed with this signal sees, and feeds it
        with them the way that guard would (the web middleware: every request a rule
        selects)."""
        return self._begin_fed, self._end_fed

    def _begin_fed(self) -> Any:
        return self._begin(by_guard=True)

    def _end_fed(self, token: Any, exc: BaseException | None, result: Any) -> None:
        self._end(token, exc)

    @contextmanager
    def track(self) -> Iterator[None]:
        """Feed the signal around the block (one call)."""
        token = self._begin(by_guard=False)
        try:
            yield
        except BaseException as exc:
            self._end(token, exc)
            raise
        self._end(token)


def _fed(signal: Any) -> _FedSignal | None:
    return signal if isinstance(signal, _FedSignal) else None


class InFlight(_FedSignal):
    """The number of calls in progress (optionally as a fraction of ``capacity``)."""

    def __init__(self, capacity: float | None = None) -> None:
        self.capacity = None if capacity is None else divisor("capacity", capacity)
        self.count = 0

    def _open(self) -> None:
        self.count += 1

    def _close(self, opened: None, exc: BaseException | None) -> None:
        self.count -= 1

    def __call__(self) -> float:
        return self.count if self.capacity is None else self.count / self.capacity


class LatencyEWMA(_FedSignal):
    """An exponentially weighted moving average of call latencies, in seconds:
    ``avg += alpha * (sample - avg)``."""

    def __init__(self, alpha: float = 0.2, *, clock: Clock | None = None) -> None:
        value = finite_positive("alpha", alpha)
        self._clock = clock_option("clock", clock)  # times the calls it is fed by
        if value > 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.alpha = value
        self.value = 0.0
        self._seeded = False

    def observe(self, seconds: float) -> None:
        """Feed one latency by hand: a finite number of seconds >= 0 (a NaN or an inf would
        stay in the average for good)."""
        self._add(non_negative("seconds", seconds))

    def _add(self, seconds: float) -> None:
        if not self._seeded:
            self.value, self._seeded = seconds, True
        else:
            self.value += self.alpha * (seconds - self.value)

    def _open(self) -> float:
        return self._clock.time()

    def _close(self, opened: float, exc: BaseException | None) -> None:
        if exc is None or isinstance(exc, Exception):  # a cancelled call is no latency
            self._add(self._clock.time() - opened)

    def __call__(self) -> float:
        return self.value


class EventLoopLag:
    """How late the event loop runs a timer (seconds, smoothed): a direct measure of an
    overloaded loop. A background task samples every ``interval`` seconds while started
    (``async with lag:``, or ``start()``/``await stop()``). It takes no ``clock=``: what it
    measures is the running loop's own timer, read on the loop's own clock."""

    def __init__(self, interval: float = 0.25, alpha: float = 0.3) -> None:
        # At least a millisecond: a sampler any faster would keep the loop busy by itself.
        self.interval = finite_positive("interval", interval, minimum=0.001)
        self._average = LatencyEWMA(alpha)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        # A sampler that ended (cancelled by its loop's shutdown, as asyncio.run does) is
        # started again: else the signal would keep its last reading for good.
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> EventLoopLag:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self._average._add(max(0.0, loop.time() - due))

    def __call__(self) -> float:
        return self._average.value


def _read(signal: Callable[[], float]) -> float:
    value = signal()
    # (NaN is not equal to itself; a bool is an int, but no load: a predicate given as signal)
    if isinstance(value, int | float) and value == value and value.__class__ is not bool:
        try:
            return float(value)
        except OverflowError:  # an int beyond float range
            pass
    raise TypeError(f"a load signal must return a number, got {value!r} from {signal!r}")

"""The circuit breaker's state machine (pure: time and randomness are arguments).

States: CLOSED (calls flow, outcomes recorded), OPEN (calls refused until the break ends),
HALF_OPEN (a fixed number of probes admitted, everyone else refused; the probes' outcomes alone
decide), and the manual ISOLATED (forced open) and DISABLED (forced closed).

Trip rules, checked after each recorded outcome in CLOSED: ``consecutive_failures >=
failure_threshold`` (after a failure), or, once the window holds ``minimum_calls``, ``failure
rate >= failure_rate_threshold`` or ``slow-call rate >= slow_call_rate_threshold`` — after
*every* outcome, success or not, so the decision depends on the window's contents alone, never
on the order they came in (resilience4j's rule).

Every admission carries the *generation* it was granted in; the generation changes with every
state change, so an outcome that arrives after the state moved on (a call admitted while
CLOSED finishing during HALF_OPEN) is not mistaken for a probe's.

A breaker must never be stuck in HALF_OPEN: if the probes have not all finished
``half_open_timeout`` after it began, it re-opens, as of that deadline (:meth:`expire`, which
every read-out applies first, so what a read says is what the next call meets).

A caller refused while the probes run is told to come back after as long as the probes have
run so far (at least 1 ms, never past the watchdog): callers polling on the hint come back at
most the probe's own duration after its outcome, and a caller hammering on it is refused
O(log(probe duration / 1 ms)) times, each refusal a local check.

:class:`BreakerMachine` is also the in-memory implementation of the public state seam
(:class:`aioresilience.abc.BreakerState`): ``try_admit``/``on_outcome``/``on_release``/
``manual`` and the read-outs, with every state change told to ``report`` (the front-end's
events and statistics). :class:`BreakerOptions` is what a state binds to.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .backoff import Backoff
from .windowing import reachable
from .windows import CountWindow, TimeWindow

__all__ = [
    "BreakerMachine",
    "BreakerOptions",
    "CircuitState",
    "ManualAction",
    "Refused",
    "Transition",
]


class CircuitState(enum.StrEnum):
    """A breaker's state. A ``str`` too, equal to its value (``CircuitState.OPEN == "open"``):
    what a refusal's ``state`` carries, and what a log or a JSON document shows."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    ISOLATED = "isolated"  # forced open by hand
    DISABLED = "disabled"  # forced closed by hand: nothing recorded, everything admitted


CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
ISOLATED = CircuitState.ISOLATED
DISABLED = CircuitState.DISABLED

ManualAction = Literal["isolate", "disable", "reset", "trip"]
# A state change as told to the front-end: (old, new, at, retry_after: 0 unless OPEN).
Transition = Callable[[CircuitState, CircuitState, float, float], None]


@dataclass(frozen=True, slots=True)
class BreakerOptions:
    """A breaker's policy, checked by the front-end (``CircuitBreaker``): what a state
    (in memory, or a shared store's) binds to. ``minimum_calls`` is already capped at a count
    window's size; ``window`` matters only when a rate rule is set (:attr:`windowed`)."""

    name: str
    failure_threshold: int | None
    failure_rate_threshold: float | None
    slow_call_rate_threshold: float | None
    slow_call_duration: float | None
    window: Literal["count", "time"]
    window_size: float
    minimum_calls: int
    break_duration: Backoff
    half_open_max_calls: int
    half_open_max_duration: float
    seed: int | None = None
    buckets: int = 10  # a time window's buckets
    # The breaker's Clock (``time()``): a state that reads the time itself, after a round
    # trip, reads it here, so every deadline of one breaker is on one clock.
    clock: Any = None

    @property
    def windowed(self) -> bool:
        """Whether a rate rule needs a window of outcomes."""
        return self.failure_rate_threshold is not None or self.slow_call_rate_threshold is not None


@dataclass(frozen=True, slots=True)
class Refused:
    """``try_admit``'s answer when a call may not run: when to come back (seconds, ``inf``
    while isolated), the state that refused it, and whether that state is shared."""

    retry_after: float
    state: CircuitState
    shared: bool = False


class BreakerMachine:
    """Mutable breaker state plus its policy. ``admit`` before a call, then exactly one of
    ``record`` (the call's outcome counts) or ``release`` (it does not: ignored error,
    cancellation)."""

    __slots__ = (
        "break_duration",
        "consecutive_failures",
        "failure_rate_threshold",
        "failure_threshold",
        "generation",
        "half_open_since",
        "half_open_timeout",
        "minimum_calls",
        "open_until",
        "opened_at",
        "opens",
        "probe_failures",
        "probe_slow",
        "probes",
        "probes_admitted",
        "probes_done",
        "random",
        "report",
        "slow_call_rate_threshold",
        "state",
        "window",
    )

    def __init__(
        self,
        *,
        failure_threshold: int | None,
        failure_rate_threshold: float | None,
        slow_call_rate_threshold: float | None,
        minimum_calls: int,
        window: CountWindow | TimeWindow | None,
        break_duration: Backoff,
        probes: int,
        half_open_timeout: float,
        random: Callable[[], float],
        report: Transition | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.failure_rate_threshold = failure_rate_threshold
        self.slow_call_rate_threshold = slow_call_rate_threshold
        self.minimum_calls = minimum_calls
        self.window = window
        self.break_duration = break_duration
        self.probes = probes
        self.half_open_timeout = half_open_timeout
        self.random = random
        self.report = report
        self.state = CLOSED
        self.generation = 0
        self.consecutive_failures = 0
        self.opens = 0  # consecutive openings without a close: grows the break duration
        self.opened_at = self.open_until = self.half_open_since = 0.0
        self.probes_admitted = self.probes_done = self.probe_failures = self.probe_slow = 0

    @classmethod
    def from_options(
        cls, options: BreakerOptions, report: Transition | None, random: Callable[[], float]
    ) -> BreakerMachine:
        """The in-memory state of a breaker with these options (``random``: the jitter's
        source, seeded from ``options.seed`` by the caller)."""
        window: CountWindow | TimeWindow | None = None
        if options.windowed:
            window = (
                CountWindow(int(options.window_size))
                if options.window == "count"
                else TimeWindow(options.window_size, options.buckets)
            )
        return cls(
            failure_threshold=options.failure_threshold,
            failure_rate_threshold=options.failure_rate_threshold,
            slow_call_rate_threshold=options.slow_call_rate_threshold,
            minimum_calls=options.minimum_calls,
            window=window,
            break_duration=options.break_duration,
            probes=options.half_open_max_calls,
            half_open_timeout=options.half_open_max_duration,
            random=random,
            report=report,
        )

    # -- the state seam (aioresilience.abc.BreakerState) ------------------------------------

    # While CLOSED, try_admit answers without reading ``now``: the front-end skips the clock.
    closed_is_local = True

    def try_admit(self, now: float) -> int | Refused:
        """The ticket (the generation) of an admitted call, or :class:`Refused`."""
        if self.state is CLOSED:
            return self.generation
        wait = self.admit(now)
        if wait:
            return Refused(wait, self.state)
        # Admitted while disabled: a ticket no generation has (~g < 0), never counted,
        # whatever the state has become by the time the call ends.
        return ~self.generation if self.state is DISABLED else self.generation

    def on_outcome(self, ticket: Any, now: float, failed: bool, slow: bool) -> bool:
        """Record an admitted call's outcome; whether it counts at all (not while disabled,
        nor for a call admitted while disabled)."""
        if not failed and ticket == self.generation and self.state is CLOSED:
            if self.window is None:  # the hot path: a success only resets the streak
                self.consecutive_failures = 0
                return True
        elif ticket < 0 or self.state is DISABLED:
            return False
        self.record(now, ticket, failed, slow)
        return True

    def on_release(self, ticket: Any) -> bool:
        """An admitted call ended with no outcome (cancelled, ignored): its half-open probe
        slot goes back; whether the call counts in statistics."""
        counted = ticket >= 0 and self.state is not DISABLED
        self.release(ticket)
        return counted

    def read_state(self, now: float) -> CircuitState:
        """The state the next call meets: OPEN past its break reads HALF_OPEN."""
        self.expire(now)
        if self.state is OPEN and now >= self.open_until:
            return HALF_OPEN
        return self.state

    def retry_after(self, now: float) -> float:
        self.expire(now)
        return self.wait(now)

    def window_totals(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) in the window (zeros without one)."""
        return (0, 0, 0) if self.window is None else self.window.totals(now)

    def manual(self, action: ManualAction, now: float) -> None:
        if action == "isolate":
            self.isolate(now)
        elif action == "disable":
            self.disable(now)
        elif action == "reset":
            self.reset(now)
        else:
            self.force_open(now)

    # -- admission ------------------------------------------------------------------------

    def admit(self, now: float) -> float:
        """0.0 if a call may run now (in :attr:`generation`); else the retry-after (seconds,
        ``inf`` while isolated)."""
        state = self.state
        if state is CLOSED or state is DISABLED:
            return 0.0
        self.expire(now)
        if self.state is OPEN and now >= self.open_until:
            self._half_open(now)
        wait = self.wait(now)
        if not wait and self.state is HALF_OPEN:
            self.probes_admitted += 1
        return wait

    def expire(self, now: float) -> None:
        """The half-open watchdog: probes that have not all finished ``half_open_timeout``
        after HALF_OPEN began must not hold it; the circuit re-opened at that deadline."""
        if self.state is HALF_OPEN:
            deadline = self.half_open_since + self.half_open_timeout
            if now >= deadline:
                self._open(deadline, told_at=now)

    def wait(self, now: float) -> float:
        """What :meth:`admit` would answer at ``now`` (after :meth:`expire`), taking nothing."""
        state = self.state
        if state is OPEN:
            return self._left_open(now)
        if state is ISOLATED:
            return float("inf")
        if state is HALF_OPEN and self.probes_admitted >= self.probes:
            since = self.half_open_since
            return max(1e-3, min(now - since, since + self.half_open_timeout - now))
        return 0.0

    def _left_open(self, now: float) -> float:
        """The break's time left, such that sleeping it from ``now`` reaches its end
        (``now + (until - now)`` may round to an ulp before ``until``)."""
        until = self.open_until
        return reachable(now, until) - now if now < until else 0.0

    # -- outcomes ---------------------------------------------------------------------------

    def record(self, now: float, generation: int, failed: bool, slow: bool) -> None:
        """The outcome of a call admitted in ``generation``."""
        if self.state is HALF_OPEN:  # a probe ending past the bound: the circuit re-opened first
            self.expire(now)
        if generation != self.generation:
            return  # admitted under an earlier state: its outcome no longer applies
        state = self.state
        if state is CLOSED:
            if failed:
                self.consecutive_failures += 1
                threshold = self.failure_threshold
                if threshold is not None and self.consecutive_failures >= threshold:
                    self._open(now)
                    return
            else:
                self.consecutive_failures = 0
            window = self.window
            if window is not None:
                window.record(now, failed, slow)
                self._maybe_trip(now, window)
        elif state is HALF_OPEN:
            self.probes_done += 1
            self.probe_failures += failed
            self.probe_slow += slow
            if self._probes_failed(final=False):
                self._open(now)
            elif self.probes_done >= self.probes:
                if self._probes_failed(final=True):
                    self._open(now)
                else:
                    self._close(now)

    def release(self, generation: int) -> None:
        """A call admitted in ``generation`` ended without an outcome that counts: in
        HALF_OPEN its probe slot is given back for another caller."""
        if generation == self.generation and self.state is HALF_OPEN and self.probes_admitted:
            self.probes_admitted -= 1

    def _maybe_trip(self, now: float, window: CountWindow | TimeWindow) -> None:
        """The rate rules, over the window as it is now (whatever the outcome just added)."""
        calls, failures, slow = window.totals(now)
        if calls < self.minimum_calls or calls == 0:
            return
        rate = self.failure_rate_threshold
        slow_rate = self.slow_call_rate_threshold
        if (rate is not None and failures / calls >= rate) or (
            slow_rate is not None and slow / calls >= slow_rate
        ):
            self._open(now)

    def _probes_failed(self, *, final: bool) -> bool:
        """Whether the probes so far condemn the circuit. With a failure-rate threshold the
        probes are judged by it (once all are done); otherwise any failing probe re-opens.
        A slow-call-rate threshold applies to the probes as well."""
        rate = self.failure_rate_threshold
        slow_rate = self.slow_call_rate_threshold
        if rate is None and self.probe_failures > 0:
            return True  # no failure-rate rule: any failing probe condemns
        if not final:
            # Re-open early once the failures already reach the threshold over all probes.
            return rate is not None and self.probe_failures / self.probes >= rate
        done = self.probes_done
        return (rate is not None and self.probe_failures / done >= rate) or (
            slow_rate is not None and self.probe_slow / done >= slow_rate
        )

    # -- transitions ------------------------------------------------------------------------

    def _enter(self, state: CircuitState, now: float) -> None:
        old = self.state
        self.state = state
        self.generation += 1
        if self.report is not None and state is not old:
            retry = self._left_open(now) if state is OPEN else 0.0
            self.report(old, state, now, retry)

    def _open(self, at: float, told_at: float | None = None) -> None:
        """Open as of ``at`` (the watchdog's deadline, told at ``told_at``: when seen)."""
        previous = self.open_until - self.opened_at if self.opens else None
        duration = self.break_duration.delay(self.opens, previous, self.random)
        self.opens += 1
        self.opened_at = at
        self.open_until = at + duration
        self._enter(OPEN, at if told_at is None else told_at)

    def _half_open(self, now: float) -> None:
        self.half_open_since = now
        self.probes_admitted = self.probes_done = self.probe_failures = self.probe_slow = 0
        self._enter(HALF_OPEN, now)

    def _close(self, now: float) -> None:
        self.opens = 0
        self.consecutive_failures = 0
        if self.window is not None:
            self.window.reset()
        self._enter(CLOSED, now)

    # -- manual control (``now``: when the change is told) ------------------------------------

    def isolate(self, now: float = 0.0) -> None:
        self._enter(ISOLATED, now)

    def disable(self, now: float = 0.0) -> None:
        self._enter(DISABLED, now)

    def reset(self, now: float = 0.0) -> None:
        self._close(now)

    def force_open(self, now: float) -> None:
        self._open(now)

    def follow_open(self, until: float, length: float, opens: int) -> None:
        """Take up a break another machine decided: OPEN until ``until`` for ``length``
        seconds, its ``opens``-th (a shared breaker's last view of its store, when the store
        is away and this machine decides instead). Not reported: the view reported the
        change when it saw it."""
        self.state = OPEN
        self.generation += 1
        self.opens = max(self.opens, opens)
        self.opened_at = until - length
        self.open_until = until

"""Retry: attempts with backoff and jitter, server hints, deadlines and retry budgets.

``await policy.call(fn, *args)``, ``@policy`` / ``@retry(...)``, or::

    async for attempt in policy:
        with attempt:
            await fn()

Rules (DESIGN rule 2 and 3): ``CancelledError`` (any BaseException that is not an Exception)
is never retried; the library's own refusals (:class:`Rejected`: open circuit, rate limited,
...) are retried only with ``retry_rejections=True``; when retries run out the last exception
is re-raised unchanged, with a note listing the attempts, or the last result returned for
result-based retries. A sleep never runs past ``deadline`` or ``max_elapsed``: if the next
delay would cross it, the last outcome is given back at once.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random as _random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from ._core.budget import ConcurrencyBudget, TokenBudget
from ._support import clock as _clock
from ._support.context import ResilienceContext
from ._support.errors import Rejected
from ._support.events import EventSource, Severity
from ._support.listeners import logger
from ._support.predicates import (
    ExceptionFilter,
    exception_predicate,
    optional_callable,
    optional_sync_callable,
)
from ._support.rerun import ExecuteForms, RerunStrategy, timed
from ._support.schedules import Backoff, backoff_cap, exponential
from ._support.validation import (
    finite_positive,
    fraction,
    non_negative,
    non_negative_int,
    non_negative_or_none,
    number,
    positive_int,
    text,
)

__all__ = [
    "Attempt",
    "ExponentialBackoff",
    "Retry",
    "RetryBudget",
    "RetryState",
    "RetryStrategy",
    "retry",
]

P = ParamSpec("P")
T = TypeVar("T")

_NO_RESULT: Any = object()


@dataclass(frozen=True, slots=True)
class RetryState:
    """What hooks receive: the attempt that just failed (1-based), its outcome, the delay
    before the next one (``before_sleep``) or why retrying stops (``on_give_up``)."""

    policy: str
    attempt: int
    elapsed: float
    delay: float
    exception: BaseException | None
    result: Any
    reason: str  # "retrying", or why it gave up: attempts, deadline, max_elapsed, retry_after,
    # budget, not_retryable


class RetryBudget:
    """A budget shared by many retrying calls, so retries cannot multiply load in an outage.

    ``RetryBudget.concurrency(percent=0.2, min_retries=3)``: Envoy's form, retries in flight
    at most ``max(min_retries, percent x calls in flight)``.
    ``RetryBudget.tokens(max_tokens=10, token_ratio=0.1)``: gRPC's form, failures spend a
    token, successes earn ``token_ratio``, retries only while more than half remain.
    A spent budget means no retry: the last outcome is given back and ``exhausted`` counts it.
    """

    __slots__ = ("_core", "exhausted", "kind")

    def __init__(self, core: ConcurrencyBudget | TokenBudget, kind: str) -> None:
        self._core = core
        self.kind = kind
        self.exhausted = 0

    @classmethod
    def concurrency(cls, percent: float = 0.2, min_retries: int = 3) -> RetryBudget:
        share = fraction("percent", percent, zero=False)
        return cls(
            ConcurrencyBudget(share, non_negative_int("min_retries", min_retries)), "concurrency"
        )

    @classmethod
    def tokens(cls, max_tokens: float = 10.0, token_ratio: float = 0.1) -> RetryBudget:
        return cls(
            TokenBudget(
                finite_positive("max_tokens", max_tokens),
                finite_positive("token_ratio", token_ratio),
            ),
            "tokens",
        )

    def __repr__(self) -> str:
        core = self._core
        if isinstance(core, TokenBudget):
            state = f"tokens={core.tokens:g}/{core.max_tokens:g}"
        else:
            state = f"retries={core.retries} requests={core.requests}"
        return f"<RetryBudget {self.kind} {state} exhausted={self.exhausted}>"


class Retry(ExecuteForms, EventSource):
    """A retry policy: usable as ``@policy``, ``await policy.call(fn, ...)``,
    ``async for attempt in policy`` and in a pipeline (:class:`RetryStrategy`).

    Defaults: 3 attempts, exponential backoff from 0.1 s doubling to at most 30 s with full
    jitter, retry on any ``Exception`` except the library's own refusals, honour
    ``retry_after`` hints up to 60 s.
    """

    def __init__(
        self,
        *,
        attempts: int | None = 3,
        backoff: Backoff | None = None,
        max_elapsed: float | None = None,
        deadline: float | None = None,
        retry_on: ExceptionFilter = Exception,
        retry_on_result: Callable[[Any], bool] | None = None,
        retry_rejections: bool = False,
        retry_after: Callable[[Any], float | None] | None = None,
        max_retry_after: float = 60.0,
        before_sleep: Callable[[RetryState], Any] | None = None,
        on_give_up: Callable[[RetryState], Any] | None = None,
        budget: RetryBudget | None = None,
        seed: int | None = None,
        name: str | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "Retry"
        self.attempts = math.inf if attempts is None else positive_int("attempts", attempts)
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(
                f"backoff must be a schedule from constant(), linear() or exponential(), "
                f"got {backoff!r}"
            )
        self.backoff = backoff if backoff is not None else exponential()
        self.max_elapsed = non_negative_or_none("max_elapsed", max_elapsed)
        if deadline is not None:
            deadline = number("deadline", deadline, what="a loop time in seconds or None")
        self.deadline = deadline
        if attempts is None and self.max_elapsed is None and deadline is None:
            raise ValueError("unbounded retry: set attempts, max_elapsed or deadline")
        self._retry_on = exception_predicate("retry_on", retry_on)
        self._judge = optional_sync_callable("retry_on_result", retry_on_result)
        if not isinstance(retry_rejections, bool):
            raise TypeError(f"retry_rejections must be a bool, got {retry_rejections!r}")
        self.retry_rejections = retry_rejections
        self._hint_of = optional_sync_callable("retry_after", retry_after)
        self.max_retry_after = finite_positive("max_retry_after", max_retry_after)
        self._before_sleep = optional_callable("before_sleep", before_sleep)
        self._on_give_up = optional_callable("on_give_up", on_give_up)
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(f"budget must be a RetryBudget or None, got {budget!r}")
        self.budget = budget
        self._random = _random.Random(seed).random
        self._events = None

    # -- the core -------------------------------------------------------------------------------
    # `call`, `@policy` and the pipeline's RetryStrategy all run execute (ExecuteForms).

    async def execute(
        self, call: Callable[[], Awaitable[T]], context: ResilienceContext | None
    ) -> T:
        """``await call()``, retried by this policy. In a pipeline every attempt counts in
        ``context.attempt`` (and is timed when a listener wants it)."""
        budget = self.budget
        if budget is not None:
            budget._core.start_request()
        try:
            started = _clock.now()  # elapsed counts from the first attempt, always
            try:
                result = await (call() if context is None else self._attempt(call, context))
            except Exception as exc:
                failure: Exception | None = exc
            else:
                judge = self._judge
                if judge is None or not judge(result):
                    if budget is not None:
                        budget._core.record(True)
                    return result
                failure = None
            # Retried outside the `except` block, so later attempts' exceptions do not carry
            # the first one as their __context__.
            return await self._retry(
                call, context, failure, result if failure is None else _NO_RESULT, started
            )
        finally:
            if budget is not None:
                budget._core.end_request()

    def _attempt(
        self, call: Callable[[], Awaitable[T]], context: ResilienceContext
    ) -> Awaitable[T]:
        """One attempt inside a pipeline: counted in the context, timed if a listener wants."""
        context.attempt += 1
        if context._timed:
            return timed(call(), self.name, "attempt", attempt=context.attempt)
        return call()

    def __aiter__(self) -> AsyncIterator[Attempt]:
        return _Attempts(self)

    # -- the retry loop -------------------------------------------------------------------------

    async def _retry(
        self,
        call: Callable[[], Awaitable[T]],
        context: ResilienceContext | None,
        exc: Exception | None,
        result: Any,
        started: float,
    ) -> T:
        run = _Run(self, started)
        while True:
            if not await run.after_failure(exc, result):
                if exc is not None:
                    raise exc
                return result  # type: ignore[no-any-return]
            try:
                result = await (call() if context is None else self._attempt(call, context))
                exc = None
            except Exception as error:
                exc, result = error, _NO_RESULT
            finally:
                run.attempt_done()
            judge = self._judge
            if exc is None and (judge is None or not judge(result)):
                run.succeeded()
                return result  # type: ignore[no-any-return]

    def retryable(self, exc: BaseException) -> bool:
        """Whether this policy retries ``exc`` (never a cancellation)."""
        if not isinstance(exc, Exception):
            return False
        if isinstance(exc, Rejected) and not self.retry_rejections:
            return False
        return self._retry_on(exc)

    def hint(self, outcome: Any) -> float | None:
        """Seconds the outcome asks us to wait (``retry_after`` of our refusals, or what the
        ``retry_after`` extractor finds)."""
        if self._hint_of is not None:
            value = self._hint_of(outcome)
            if value is not None:
                return float(value)
        value = getattr(outcome, "retry_after", None)
        return float(value) if isinstance(value, int | float) else None

    def __repr__(self) -> str:
        return (
            f"<Retry {self.name!r} attempts={self.attempts} backoff={self.backoff!r} "
            f"max_elapsed={self.max_elapsed} budget={self.budget!r}>"
        )


class _Run:
    """The state of one retried call after its first failure."""

    __slots__ = ("attempt", "history", "holds_retry", "policy", "previous_delay", "started")

    def __init__(self, policy: Retry, started: float) -> None:
        self.policy = policy
        self.started = started  # when the first attempt began
        self.attempt = 1  # attempts made so far
        self.previous_delay: float | None = None
        self.history: list[str] = []
        self.holds_retry = False

    async def after_failure(self, exc: BaseException | None, result: Any) -> bool:
        """A failed attempt: sleep and return True to try again, or False to give up."""
        policy = self.policy
        budget = policy.budget
        if budget is not None:
            budget._core.record(False)
        outcome: Any = exc if exc is not None else result
        self.history.append(
            f"#{self.attempt} {type(exc).__name__}: {exc}"
            if exc is not None
            else f"#{self.attempt} result {result!r}"
        )
        now = _clock.now()
        elapsed = now - self.started
        if exc is not None and not policy.retryable(exc):
            return await self._give_up(exc, result, elapsed, "not_retryable")
        if self.attempt >= policy.attempts:
            return await self._give_up(exc, result, elapsed, "attempts")
        delay = policy.backoff.delay(self.attempt - 1, self.previous_delay, policy._random)
        hint = policy.hint(outcome)
        if hint is not None:
            if hint > policy.max_retry_after:
                return await self._give_up(exc, result, elapsed, "retry_after")
            delay = max(delay, hint)
        bound = self._bound_crossed(now, delay)
        if bound is not None:
            return await self._give_up(exc, result, elapsed, bound)
        if budget is not None:
            if not budget._core.try_retry():
                budget.exhausted += 1
                policy._emit("budget_exhausted", Severity.WARNING, budget=budget.kind)
                return await self._give_up(exc, result, elapsed, "budget")
            self.holds_retry = True
        policy._emit(
            "retry_scheduled",
            Severity.INFO,
            attempt=self.attempt,
            delay=delay,
            outcome=type(exc).__name__ if exc is not None else "result",
        )
        try:
            if policy._before_sleep is not None:
                await _hook(
                    policy._before_sleep,
                    RetryState(policy.name, self.attempt, elapsed, delay, exc, result, "retrying"),
                )
                # A slow async hook must not carry the sleep past a deadline either.
                now = _clock.now()
                bound = self._bound_crossed(now, delay)
                if bound is not None:
                    self.attempt_done()
                    return await self._give_up(exc, result, now - self.started, bound)
            await asyncio.sleep(delay)
        except BaseException:
            self.attempt_done()  # the budget slot is released on every path
            raise
        self.previous_delay = delay
        self.attempt += 1
        return True

    def _bound_crossed(self, now: float, delay: float) -> str | None:
        """The stop rule that sleeping ``delay`` from ``now`` would break, if any."""
        policy = self.policy
        if policy.deadline is not None and now + delay > policy.deadline:
            return "deadline"
        if policy.max_elapsed is not None and now - self.started + delay > policy.max_elapsed:
            return "max_elapsed"
        return None

    def attempt_done(self) -> None:
        """A retry attempt finished (or was abandoned): its budget slot is free again."""
        if self.holds_retry:
            self.holds_retry = False
            budget = self.policy.budget
            if budget is not None:
                budget._core.end_retry()

    def succeeded(self) -> None:
        budget = self.policy.budget
        if budget is not None:
            budget._core.record(True)

    async def _give_up(
        self, exc: BaseException | None, result: Any, elapsed: float, reason: str
    ) -> bool:
        policy = self.policy
        if reason != "not_retryable" or self.attempt > 1:
            policy._emit("retry_gave_up", Severity.WARNING, attempts=self.attempt, reason=reason)
        if exc is not None and (self.attempt > 1 or reason != "not_retryable"):
            exc.add_note(
                f"{policy.name}: gave up after {self.attempt} attempt(s) in {elapsed:.3f}s "
                f"({reason}): " + "; ".join(self.history)
            )
        if policy._on_give_up is not None:
            await _hook(
                policy._on_give_up,
                RetryState(policy.name, self.attempt, elapsed, 0.0, exc, result, reason),
            )
        return False


async def _hook(hook: Callable[[RetryState], Any], state: RetryState) -> None:
    """Run a user hook; a failing hook is logged, never allowed to break the call."""
    try:
        outcome = hook(state)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        logger.exception("retry hook %r failed on %r", hook, state)


class Attempt:
    """One attempt of an ``async for attempt in policy`` loop; use it as ``with attempt:``."""

    __slots__ = ("_run", "exception", "number")

    def __init__(self, number: int, run: _Run | None = None) -> None:
        self.number = number
        self.exception: BaseException | None = None
        self._run = run

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.exception = exc
        if self._run is not None:
            self._run.attempt_done()  # even if the loop is left (break, cancellation) now
        # Exceptions are kept for the loop to judge; cancellations and the like pass through.
        return isinstance(exc, Exception)


class _Attempts:
    __slots__ = ("_current", "_policy", "_run", "_started")

    def __init__(self, policy: Retry) -> None:
        self._policy = policy
        self._current: Attempt | None = None
        self._run: _Run | None = None
        self._started = _clock.now()

    def __aiter__(self) -> _Attempts:
        return self

    async def __anext__(self) -> Attempt:
        current = self._current
        if current is None:
            self._current = Attempt(1)
            return self._current
        exc = current.exception
        if exc is None:
            if self._run is not None:
                self._run.succeeded()
            raise StopAsyncIteration
        if self._run is None:
            self._run = _Run(self._policy, self._started)
        if not await self._run.after_failure(exc, _NO_RESULT):
            raise exc
        self._current = Attempt(self._run.attempt, self._run)
        return self._current


def retry(**options: Any) -> Retry:
    """``@retry(attempts=5, backoff=exponential(0.2))``: a :class:`Retry` used as decorator."""
    return Retry(**options)


class ExponentialBackoff(Retry):
    """The seed guide's name: ``max_retries`` retries after the first attempt, delays
    ``base_delay * 2**n`` capped at ``max_delay``, with full jitter."""

    def __init__(
        self, max_retries: int = 3, base_delay: float = 1.0, max_delay: float = 60.0, **options: Any
    ) -> None:
        retries = non_negative_int("max_retries", max_retries)
        # Checked under the seed's names, before exponential() would call them base and cap.
        first = non_negative("base_delay", base_delay)
        cap = backoff_cap("max_delay", max_delay)
        super().__init__(attempts=retries + 1, backoff=exponential(first, cap=cap), **options)

    # `execute` is the seed guide's name for `call` here; every form (call, @policy, the
    # pipeline) runs Retry's core.
    _core = Retry.execute

    async def execute(  # type: ignore[override]
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """The seed guide's name for :meth:`call`."""
        return await self.call(fn, *args, **kwargs)


class RetryStrategy(RerunStrategy):
    """A retry policy in a pipeline: ``execute(call, context)`` is the policy's core."""

    def __init__(self, policy: Retry) -> None:
        super().__init__("retry", policy)
        self.policy = policy

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "attempts": self.policy.attempts}

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
import math
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import CoroutineType, TracebackType
from typing import Any, ClassVar, ParamSpec, TypeVar

from ._core.budget import ConcurrencyBudget, TokenBudget
from ._support.clock import Clock, clock_option, reads_inline
from ._support.context import ResilienceContext
from ._support.errors import Rejected
from ._support.events import AttemptCompleted, EventSource, ResilienceEvent, Severity, build
from ._support.guard import NO_RESULT, isawaitable
from ._support.listeners import run_hook
from ._support.predicates import (
    ExceptionFilter,
    exception_predicate,
    optional_callable,
    optional_sync_callable,
)
from ._support.rerun import ExecuteForms, RerunStrategy, timed
from ._support.schedules import Backoff, backoff_cap, exponential
from ._support.validation import (
    checked_seed,
    finite_positive,
    fraction,
    non_negative,
    non_negative_int,
    non_negative_or_none,
    number,
    positive_int,
    text,
)
from .abc import RetryLedger

__all__ = [
    "Attempt",
    "BudgetExhausted",
    "ExponentialBackoff",
    "Retry",
    "RetryBudget",
    "RetryGaveUp",
    "RetryRun",
    "RetryScheduled",
    "RetryState",
    "RetryStrategy",
    "retry",
]

P = ParamSpec("P")
T = TypeVar("T")

_running_loop = asyncio.get_running_loop
_monotonic = time.monotonic
_BASE_LOOP_TIME = asyncio.BaseEventLoop.time


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryState(ResilienceEvent):
    """What a retry's hooks and listeners receive (base of :class:`RetryScheduled` and
    :class:`RetryGaveUp`): the attempt that just failed (1-based), its outcome
    (``exception``, or the ``result`` judged a failure), the time since the first attempt, the
    delay before the next one (``before_sleep``) or why retrying stops (``on_give_up``)."""

    attempt: int
    elapsed: float
    delay: float
    exception: BaseException | None
    result: Any
    reason: str  # "retrying", or why it gave up: attempts, deadline, max_elapsed, retry_after,
    # budget, not_retryable

    @property
    def policy(self) -> str:
        """The retry policy's name (``strategy``)."""
        return self.strategy


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(RetryState):
    """A failed attempt will be retried after ``delay`` seconds (``before_sleep`` gets it)."""

    name: ClassVar[str] = "retry_scheduled"
    severity: ClassVar[Severity] = Severity.INFO


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryGaveUp(RetryState):
    """Retrying stops, for ``reason``; the last outcome is the call's (``on_give_up`` gets
    it)."""

    name: ClassVar[str] = "retry_gave_up"
    severity: ClassVar[Severity] = Severity.WARNING


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetExhausted(ResilienceEvent):
    """A retry (or hedge) was not made: the shared :class:`RetryBudget` (of ``budget`` kind,
    ``"concurrency"`` or ``"tokens"``) is spent."""

    name: ClassVar[str] = "budget_exhausted"
    severity: ClassVar[Severity] = Severity.WARNING

    budget: str


class RetryBudget:
    """A budget shared by many retrying calls, so retries cannot multiply load in an outage.

    ``RetryBudget.concurrency(percent=0.2, min_retries=3)``: Envoy's form, retries in flight
    at most ``max(min_retries, percent x calls in flight)``.
    ``RetryBudget.tokens(max_tokens=10, token_ratio=0.1)``: gRPC's form, failures spend a
    token, successes earn ``token_ratio``, retries only while more than half remain.
    ``RetryBudget(ledger, kind="...")``: any other accounting, an
    :class:`aioresilience.abc.RetryLedger`.
    A spent budget means no retry: the last outcome is given back and ``exhausted`` counts it.
    ``ledger`` is the accounting a strategy that spends the budget drives (its calls are
    described on :class:`~aioresilience.abc.RetryLedger`); :meth:`try_retry` asks it for a
    retry and counts a refusal.
    """

    __slots__ = ("exhausted", "kind", "ledger")

    def __init__(self, ledger: RetryLedger, kind: str = "custom") -> None:
        if not isinstance(ledger, RetryLedger):
            raise TypeError(
                "ledger must implement aioresilience.abc.RetryLedger (start_request, "
                f"end_request, record, try_retry, end_retry), got {ledger!r}"
            )
        self.ledger = ledger
        self.kind = text("kind", kind)
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

    def try_retry(self) -> bool:
        """Take a retry slot from the ledger (give it back with ``ledger.end_retry()``);
        False when the budget is spent, counted in ``exhausted``."""
        if self.ledger.try_retry():
            return True
        self.exhausted += 1
        return False

    def __repr__(self) -> str:
        ledger = self.ledger
        if isinstance(ledger, TokenBudget):
            state = f" tokens={ledger.tokens:g}/{ledger.max_tokens:g}"
        elif isinstance(ledger, ConcurrencyBudget):
            state = f" retries={ledger.retries} requests={ledger.requests}"
        else:
            state = ""
        return f"<RetryBudget {self.kind}{state} exhausted={self.exhausted}>"


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
        clock: Clock | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "Retry"
        # One clock for elapsed time, ``deadline`` and the sleeps between attempts.
        self._clock = clock_option("clock", clock)
        self._clock_inline = reads_inline(self._clock)  # _first reads it without a frame
        self.attempts = math.inf if attempts is None else positive_int("attempts", attempts)
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(
                f"backoff must be a schedule from constant(), linear() or exponential(), "
                f"got {backoff!r}"
            )
        self.backoff = backoff if backoff is not None else exponential()
        self.max_elapsed = non_negative_or_none("max_elapsed", max_elapsed)
        if deadline is not None:
            deadline = number(
                "deadline",
                deadline,
                what="a loop time (the clock's, given clock=) in seconds or None",
            )
            if deadline == math.inf:
                deadline = None  # no deadline, as max_elapsed=inf is no bound
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
        checked_seed(seed)
        self._random = _random.Random(seed).random
        self._events = None

    # -- the core -------------------------------------------------------------------------------
    # `call`, `@policy` and the pipeline's RetryStrategy all run execute (ExecuteForms).

    async def execute(
        self, call: Callable[[], Awaitable[T]], context: ResilienceContext | None
    ) -> T:
        """``await call()``, retried by this policy. In a pipeline every attempt counts in
        ``context.attempt`` (and is timed when a listener wants it)."""
        if self.budget is not None:  # the call counts in the budget from its first attempt
            return await self._until_done(self.start(), call, context)
        # No budget: a run has nothing to account before the first failure, so the hot path
        # (a first attempt that succeeds) makes none.
        started = self._clock.time()  # elapsed counts from the first attempt, always
        try:
            result: Any = call() if context is None else self._attempt(call, context)
            if result.__class__ is CoroutineType or isawaitable(result):
                result = await result
        except Exception as exc:
            failure: Exception | None = exc
            result = NO_RESULT
        else:
            judge = self._judge
            if judge is None or not judge(result):
                return result  # type: ignore[no-any-return]
            failure = None
        # Retried outside the `except` block, so later attempts' exceptions do not carry the
        # first one as their __context__.
        return await self._until_done(
            RetryRun(self, started=started), call, context, failure, result
        )

    # -- the pipeline's inline form of execute's first attempt (Strategy._inline) ------------
    # The pipeline's fold runs the first attempt in its own coroutine, around the layers
    # inside the retry: `_first` does what execute does before it, `_after_first` what it does
    # after a failure. A success on the first attempt then costs no coroutine of ours.

    def _first(self, context: ResilienceContext) -> float | None:
        """Begin the first attempt of a pipeline call (its start time on the policy's clock),
        or None where execute has more to do than one clock reading (a budget, a judge of
        results, a listener timing each attempt): the fold then runs execute itself."""
        if self.budget is not None or self._judge is not None or context._timed:
            return None
        if self._clock_inline:  # LoopClock.time() without its frame (see reads_inline)
            try:
                loop = _running_loop()
            except RuntimeError:
                started = self._clock.time()
            else:
                started = _monotonic() if loop.__class__.time is _BASE_LOOP_TIME else loop.time()
        else:
            started = self._clock.time()  # elapsed counts from the first attempt, always
        context.attempt += 1  # (_attempt's count, as execute makes it)
        return started

    def _after_first(
        self,
        started: float,
        call: Callable[[], Awaitable[T]],
        context: ResilienceContext,
        failure: Exception,
    ) -> Coroutine[Any, Any, T]:
        """The rest of execute after a first attempt (begun by :meth:`_first`) failed."""
        return self._until_done(RetryRun(self, started=started), call, context, failure)

    async def _until_done(
        self,
        run: RetryRun,
        call: Callable[[], Awaitable[T]],
        context: ResilienceContext | None,
        failure: Exception | None = None,
        result: Any = NO_RESULT,
    ) -> T:
        """The retry loop, over ``run`` (its first attempt's ``failure`` or ``result`` given
        when it was made already, else it is made here)."""
        judge = self._judge
        try:
            if failure is None and result is NO_RESULT:
                # Not made yet: the first attempt (a success or a judged result returns).
                failure, result = await self._once(call, context)
                if failure is None and (judge is None or not judge(result)):
                    run.succeeded()
                    return result  # type: ignore[no-any-return]
            while await run.failed(failure, result):
                failure, result = await self._once(call, context)
                if failure is None and (judge is None or not judge(result)):
                    run.succeeded()
                    return result  # type: ignore[no-any-return]
            if failure is not None:
                raise failure
            return result  # type: ignore[no-any-return]
        finally:
            run.close()

    async def _once(
        self, call: Callable[[], Awaitable[T]], context: ResilienceContext | None
    ) -> tuple[Exception | None, Any]:
        """One attempt: ``(None, result)`` or ``(exception, NO_RESULT)``."""
        try:
            result: Any = call() if context is None else self._attempt(call, context)
            if result.__class__ is CoroutineType or isawaitable(result):
                result = await result
            return None, result
        except Exception as exc:
            return exc, NO_RESULT

    def start(self) -> RetryRun:
        """Drive one retried call by hand (the seam ``execute``, ``async for`` and the HTTP
        clients are built on): a :class:`RetryRun` whose clock of elapsed time starts now
        and whose call counts in this policy's budget until :meth:`RetryRun.close`."""
        return RetryRun(self)

    def _attempt(
        self, call: Callable[[], Awaitable[T]], context: ResilienceContext
    ) -> Awaitable[T]:
        """One attempt inside a pipeline: counted in the context, timed if a listener wants."""
        context.attempt += 1
        if context._timed:
            return timed(
                call, self.name, AttemptCompleted, clock=self._clock, attempt=context.attempt
            )
        return call()

    def __aiter__(self) -> AsyncIterator[Attempt]:
        if self._judge is not None:
            # The block's result never reaches the policy: its predicate would be ignored.
            raise TypeError(
                f"{self.name}: `async for attempt in policy` cannot judge results "
                "(retry_on_result is set): use `await policy.call(fn, ...)` or the decorator"
            )
        return _Attempts(self)

    def retryable(self, exc: BaseException) -> bool:
        """Whether this policy retries ``exc`` (never a cancellation)."""
        if not isinstance(exc, Exception):
            return False
        if isinstance(exc, Rejected) and not self.retry_rejections:
            return False
        return self._retry_on(exc)

    @property
    def judges_results(self) -> bool:
        """Whether this policy was given ``retry_on_result`` or a ``retry_after`` extractor
        (options that read a call's result: an HTTP client decides those by status)."""
        return self._judge is not None or self._hint_of is not None

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


class RetryRun:
    """One retried call, driven by hand (``policy.start()``): what ``execute``, the
    ``async for`` form and the HTTP clients are built on, so that the backoff, the stop rules,
    the hooks, the events and the budget's accounting live in one place.

    Per attempt, report its outcome: ``run.succeeded()``, or ``await run.failed(exc,
    result)`` (``exc`` the exception, or ``None`` with the ``result`` judged a failure), which
    returns True after sleeping until the next attempt is due, or False when retrying stops
    (the outcome is then the call's: re-raise ``exc`` or return ``result``). ``run.close()``
    ends the call on every path (``with policy.start() as run:``); a cancellation (any
    ``BaseException`` that is not an ``Exception``) is never retried nor counted: pass it to
    nobody, let it through and close. ``attempt`` is the number of the attempt under way
    (1-based); ``started`` the clock's time when the run started.

    The budget (``Retry(budget=...)``): the call counts as a request in flight from
    ``start()`` to ``close()``, each outcome is recorded, and a retry holds its slot from the
    decision to retry until its own outcome is reported (or the run is closed).
    """

    __slots__ = (
        "_budget",
        "_history",
        "_holds_retry",
        "_previous_delay",
        "attempt",
        "closed",
        "deadline",
        "policy",
        "started",
    )

    def __init__(self, policy: Retry, *, started: float | None = None) -> None:
        self.policy = policy
        # Elapsed time counts from the first attempt: now, or when it began (``started``,
        # the policy's clock) for a run made after it.
        self.started = policy._clock.time() if started is None else started
        self.attempt = 1
        self.closed = False
        #: This run's own deadline (the clock's time; None: the policy's only), e.g. the
        #: HTTP clients' overall timeout.
        self.deadline: float | None = None
        self._previous_delay: float | None = None
        self._history: list[str] | None = None  # made on the first failure only
        self._holds_retry = False
        budget = self._budget = policy.budget
        if budget is not None:
            ledger = budget.ledger
            # gRPC's tokens count no calls in flight: its start/end_request do nothing, so
            # they are not called (two frames a call; a subclass of it is called as any).
            if ledger.__class__ is not TokenBudget:
                ledger.start_request()

    def __enter__(self) -> RetryRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def succeeded(self) -> None:
        """The attempt under way succeeded (the call's outcome)."""
        if self._holds_retry:  # (_attempt_done's test inline: most calls hold no retry)
            self._attempt_done()
        budget = self._budget
        if budget is not None:
            budget.ledger.record(True)

    def close(self) -> None:
        """The call is over (any path; again is a no-op): its budget slots are given back."""
        if self._holds_retry:
            self._attempt_done()
        budget = self._budget
        if budget is not None:
            self._budget = None
            ledger = budget.ledger
            if ledger.__class__ is not TokenBudget:  # (its end_request does nothing)
                ledger.end_request()
        self.closed = True

    async def failed(self, exc: BaseException | None = None, result: Any = NO_RESULT) -> bool:
        """The attempt under way failed: sleep and return True to try again, or False to give
        up (listeners hear why; an exception gets a note listing the attempts)."""
        self._attempt_done()  # the retry that failed holds its budget slot no longer
        if exc is not None and not isinstance(exc, Exception):
            return False  # a cancellation: never retried, never counted
        policy = self.policy
        budget = self._budget
        if budget is not None:
            budget.ledger.record(False)
        outcome: Any = exc if exc is not None else result
        history = self._history
        if history is None:
            history = self._history = []
        history.append(
            f"#{self.attempt} {type(exc).__name__}: {exc}"
            if exc is not None
            else f"#{self.attempt} result {result!r}"
        )
        now = policy._clock.time()
        elapsed = now - self.started
        if exc is not None and not policy.retryable(exc):
            return await self._give_up(exc, result, elapsed, "not_retryable")
        if self.attempt >= policy.attempts:
            return await self._give_up(exc, result, elapsed, "attempts")
        delay = policy.backoff.delay(self.attempt - 1, self._previous_delay, policy._random)
        hint = policy.hint(outcome)
        if hint is not None:
            if hint > policy.max_retry_after:
                return await self._give_up(exc, result, elapsed, "retry_after")
            delay = max(delay, hint)
        bound = self._bound_crossed(now, delay)
        if bound is not None:
            return await self._give_up(exc, result, elapsed, bound)
        if budget is not None:
            if not budget.try_retry():
                policy._emit(BudgetExhausted, budget=budget.kind)
                return await self._give_up(exc, result, elapsed, "budget")
            self._holds_retry = True
        fields = {
            "at": now,
            "attempt": self.attempt,
            "elapsed": elapsed,
            "delay": delay,
            "exception": exc,
            "result": None if exc is not None else result,  # not the "no result" marker
            "reason": "retrying",
        }
        try:
            if policy._before_sleep is None:
                policy._emit(RetryScheduled, **fields)
            else:
                await run_hook(policy._before_sleep, policy._event(RetryScheduled, **fields))
                # A slow async hook must not carry the sleep past a deadline either.
                now = policy._clock.time()
                bound = self._bound_crossed(now, delay)
                if bound is not None:
                    self._attempt_done()
                    return await self._give_up(exc, result, now - self.started, bound)
            await policy._clock.sleep(delay)
        except BaseException:
            self._attempt_done()  # the budget slot is released on every path
            raise
        self._previous_delay = delay
        self.attempt += 1
        return True

    def _bound_crossed(self, now: float, delay: float) -> str | None:
        """The stop rule that sleeping ``delay`` from ``now`` would break, if any."""
        policy = self.policy
        if policy.deadline is not None and now + delay > policy.deadline:
            return "deadline"
        # The run's own deadline ends its call (the HTTP clients' timeout): a wait that
        # reaches it leaves no time for the attempt.
        if self.deadline is not None and now + delay >= self.deadline:
            return "deadline"
        if policy.max_elapsed is not None and now - self.started + delay > policy.max_elapsed:
            return "max_elapsed"
        return None

    def _attempt_done(self) -> None:
        """A retry attempt finished (or was abandoned): its budget slot is free again."""
        if self._holds_retry:
            self._holds_retry = False
            budget = self._budget
            if budget is not None:
                budget.ledger.end_retry()

    async def _give_up(
        self, exc: BaseException | None, result: Any, elapsed: float, reason: str
    ) -> bool:
        policy = self.policy
        fields = {
            "attempt": self.attempt,
            "elapsed": elapsed,
            "delay": 0.0,
            "exception": exc,
            "result": None if exc is not None else result,  # not the "no result" marker
            "reason": reason,
        }
        # A first attempt failing with an error that is not retried is no retry giving up:
        # no note, and listeners hear nothing then; the hook still gets its call.
        heard = reason != "not_retryable" or self.attempt > 1
        if exc is not None and heard:
            exc.add_note(
                f"{policy.name}: gave up after {self.attempt} attempt(s) in {elapsed:.3f}s "
                f"({reason}): " + "; ".join(self._history or ())
            )
        hook = policy._on_give_up
        if hook is None:
            if heard:
                policy._emit(RetryGaveUp, **fields)
        else:
            event = (
                policy._event(RetryGaveUp, **fields)
                if heard
                else build(policy.name, RetryGaveUp, policy._clock, **fields)
            )
            await run_hook(hook, event)
        return False

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"attempt {self.attempt}"
        return f"<RetryRun {self.policy.name!r} {state}>"


class Attempt:
    """One attempt of an ``async for attempt in policy`` loop; use it as ``with attempt:``.

    Leaving the ``with`` block ends the attempt: a success (or a cancellation) ends the
    call there, so ``break`` after it is fine; an ``Exception`` is kept for the loop to judge
    at its next step. (Leaving the loop between a failed ``with`` block and that step
    leaves the call open in the policy's budget: let the loop go on.)"""

    __slots__ = ("_run", "exception", "number")

    def __init__(self, run: RetryRun) -> None:
        self.number = run.attempt
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
        run = self._run
        if exc is None:
            run.succeeded()
            run.close()
        elif not isinstance(exc, Exception):
            run.close()  # cancellations and the like pass through, and end the call
        return isinstance(exc, Exception)


class _Attempts:
    """The ``async for`` form: the same :class:`RetryRun` as every other form."""

    __slots__ = ("_current", "_policy", "_run")

    def __init__(self, policy: Retry) -> None:
        self._policy = policy
        self._current: Attempt | None = None
        self._run: RetryRun | None = None

    def __aiter__(self) -> _Attempts:
        return self

    async def __anext__(self) -> Attempt:
        run = self._run
        current = self._current
        if run is None or current is None:
            run = self._run = self._policy.start()
            self._current = Attempt(run)
            return self._current
        exc = current.exception
        if exc is None:  # a success (closed by the attempt), or an attempt used without `with`
            if not run.closed:
                run.succeeded()
                run.close()
            raise StopAsyncIteration
        try:
            again = await run.failed(exc)
        except BaseException:
            run.close()
            raise
        if not again:
            run.close()
            raise exc
        self._current = Attempt(run)
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

    def _inline(self) -> tuple[Callable[[ResilienceContext], Any], Callable[..., Any]] | None:
        # Only for Retry's own execute and attempt (a subclass that changes either runs its
        # execute every time).
        cls = type(self.policy)
        if cls._core is not Retry.execute or cls._attempt is not Retry._attempt:
            return None
        return self.policy._first, self.policy._after_first

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "attempts": self.policy.attempts}

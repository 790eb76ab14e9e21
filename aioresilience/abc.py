"""The public seams a store (or any other implementation) is written against.

A protocol here names only public members, so anybody can implement it: the in-memory states
under ``aioresilience._core``, the Redis store, and a test's dict-backed store all do.

Circuit breaker (Polly's CircuitStateController / CircuitBehavior split): the front-end,
:class:`aioresilience.CircuitBreaker`, owns *classification* (which exception or result is a
failure, which call is slow), *statistics* and *events*; a :class:`BreakerState` owns
*admission* and the *state changes*, and tells every change back through the
:class:`BreakerReport` it was bound with. A :class:`BreakerStore` binds a state to a breaker's
:class:`BreakerOptions` (a frozen value), never to the front-end object.

Sync or awaitable: ``try_admit`` may return an awaitable (a native coroutine) when it needs a
round trip; every other method answers at once (a remote store sends outcomes, releases and
manual actions in the background). The in-memory state answers everything synchronously, so a
closed breaker's call costs plain method calls, no coroutine.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable

from ._core.breaker import BreakerOptions, CircuitState, ManualAction, Refused

__all__ = [
    "BreakerOptions",
    "BreakerReport",
    "BreakerState",
    "BreakerStore",
    "CircuitState",
    "ManualAction",
    "Refused",
]


class BreakerReport(Protocol):
    """What a bound state tells its front-end; the front-end turns it into events,
    ``on_state_change`` callbacks and statistics."""

    def transition(
        self, old: CircuitState, new: CircuitState, at: float, retry_after: float
    ) -> None:
        """The state moved from ``old`` to ``new``, seen at ``at`` (the front-end's clock);
        ``retry_after``: seconds until the break ends (0 unless ``new`` is OPEN)."""

    def store_failure(self, error: BaseException | None) -> None:
        """The store could not answer (the state decided locally instead)."""


@runtime_checkable
class BreakerState(Protocol):
    """A circuit breaker's state: admission, outcomes and state changes.

    A *ticket* is whatever ``try_admit`` returns for an admitted call, handed back unchanged to
    exactly one of ``on_outcome`` (the call's outcome counts) or ``on_release`` (it does not).
    Times (``now``) are the front-end's clock, in seconds.
    """

    @property
    def state(self) -> CircuitState:
        """The state as last known, with no time applied (the front-end's fast check)."""

    @property
    def closed_is_local(self) -> bool:
        """True if, while :attr:`state` is CLOSED, ``try_admit`` answers at once without
        reading ``now``: the front-end then skips reading the clock."""

    @property
    def consecutive_failures(self) -> int:
        """The current failure streak (statistics)."""

    def try_admit(self, now: float) -> Any | Refused | Awaitable[Any | Refused]:
        """A ticket if a call may run now, :class:`Refused` if not, or an awaitable of either
        (when a round trip is needed). Admission in HALF_OPEN takes a probe slot."""

    def on_outcome(self, ticket: Any, now: float, failed: bool, slow: bool) -> bool:
        """The admitted call's outcome (classified by the front-end). Returns whether it
        counts in statistics (not while disabled, nor for a call admitted while disabled)."""

    def on_release(self, ticket: Any) -> bool:
        """The admitted call ended with no outcome (cancelled, an ignored exception, a
        refusal inside): a half-open probe slot goes back. Returns whether it counts in
        statistics (as ``on_outcome``)."""

    def read_state(self, now: float) -> CircuitState:
        """The state the next call meets at ``now`` (an OPEN circuit past its break reads
        HALF_OPEN; stuck probes re-open it first)."""

    def retry_after(self, now: float) -> float:
        """Seconds until a call can be admitted (0: now; ``inf`` while isolated)."""

    def window_totals(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) in the rolling window, as far as known here."""

    def manual(self, action: ManualAction, now: float) -> None:
        """``isolate`` (forced open), ``disable`` (forced closed, nothing counted), ``reset``
        (closed, windows emptied) or ``trip`` (open for a normal break)."""


class BreakerStore(Protocol):
    """Where breakers keep their state (``CircuitBreaker(store=...)``)."""

    def bind_breaker(self, options: BreakerOptions, report: BreakerReport) -> BreakerState:
        """The state of the breaker with ``options``, telling its changes to ``report``."""

"""The public seams: what a store must offer to keep a primitive's state.

A rate limiter is a front-end (:class:`~aioresilience.RateLimiter`: validation, the ways in,
statistics and events) over a *state* that owns admission. The in-process state is the
limiter's own (the pure algorithms and key store of ``aioresilience._core``, with the FIFO
waiting machinery around them); a shared store (``aioresilience.stores.redis.RedisStore``, or
one of your own) implements :class:`LimiterStore`: given a limiter's frozen
:class:`LimiterOptions` (never the limiter object) it returns a :class:`LimiterState`, and the
limiter routes every decision to it. Nothing here names a private member, so anyone can write
a store.

Methods may answer synchronously or return an awaitable: an in-process state answers at once,
a store across the network needs a round trip. The front-end awaits whatever is awaitable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from ._core.ratelimit import Decision, RateAlgorithm

__all__ = ["Decision", "LimiterOptions", "LimiterState", "LimiterStore", "RateAlgorithm"]


@dataclass(frozen=True, slots=True)
class LimiterOptions:
    """What a store is told about a limiter it keeps state for.

    ``name``: the limiter's name as given (``None`` when none was given: a shared store needs
    one, it is the identity every process shares). ``kind``: the limiter's class name, for
    messages. ``algorithm``: the policy, an immutable :class:`RateAlgorithm` (its public
    attributes: ``max_cost``, ``horizon`` and the algorithm's own parameters, such as
    ``interval``/``burst`` of GCRA or ``limit``/``window`` of the window counters).
    ``on_store_failure(policy, error)``: the state calls it each time it could not decide and
    its failure policy decided instead, so the front-end counts it and emits its event.
    """

    name: str | None
    kind: str
    algorithm: RateAlgorithm[Any]
    on_store_failure: Callable[[str, BaseException], None]

    @property
    def label(self) -> str:
        """The name to show in messages (the kind when no name was given)."""
        return self.kind if self.name is None else self.name


class LimiterState(Protocol):
    """One limiter's state, for every key: admission is decided here.

    ``cost`` is always in ``1..algorithm.max_cost`` (the front-end checks it). A refusal is a
    :class:`~aioresilience.RateLimited` raised by :meth:`acquire` (naming ``retry_after``), or
    a :class:`Decision` with ``allowed=False`` from :meth:`decide`.
    """

    @property
    def limit(self) -> int:
        """The most cost admissible at once: what every :class:`Decision` carries as
        ``limit``."""
        ...

    def decide(self, key: Hashable, cost: int) -> Decision | Awaitable[Decision]:
        """Admit ``cost`` for ``key`` now or refuse, never waiting; the decision carries
        remaining capacity, retry-after and reset time."""
        ...

    def acquire(self, key: Hashable, cost: int, max_wait: float) -> bool | Awaitable[bool]:
        """Admit ``cost`` for ``key`` within ``max_wait`` seconds (``math.inf``: as long as it
        takes): ``True`` if the caller had to wait. Raises ``RateLimited`` at once, having
        consumed nothing, when admission would take longer. Cancelling the awaitable gives
        back whatever it reserved: a cancelled caller leaves no reservation behind."""
        ...

    def waiting(self) -> int:
        """Callers of this process waiting now."""
        ...

    def keys(self) -> int:
        """Keys whose state this process holds (0 for a store that holds them elsewhere)."""
        ...


class LimiterStore(Protocol):
    """A store that can keep rate limiters' state (``RateLimiter(..., store=...)``)."""

    def bind_limiter(self, options: LimiterOptions) -> LimiterState:
        """The state of one limiter in this store. Raises ``TypeError``/``ValueError``
        naming what the store cannot keep (an algorithm it has no script for, a missing
        name)."""
        ...

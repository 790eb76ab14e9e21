"""What every rate-limit algorithm offers the front-ends and stores.

An algorithm is an immutable policy object; the per-key *state* it works on is owned by a store
and passed in. ``None`` always means "fresh" (never used, or idle long enough to be forgotten),
so a store may drop any state whose :meth:`RateAlgorithm.fresh_at` has passed, losing nothing.

Waiting is done by *reservation*: a caller willing to wait up to ``max_wait`` seconds commits its
cost now, against a time ``at`` in the future, and sleeps until then. Reservations are handed out
in arrival order (``at`` never decreases across callers of one key), which is what makes waiters
FIFO. A waiter that gives up is removed by *replaying* the other reservations in order (each
one is ``reserve`` at its own time, which admits it there again on a state that has less in
it), never by subtracting its cost from a state that later reservations were computed on:
that would hand capacity back into the past. :meth:`RateAlgorithm.cancel` is only asked to
give back the newest reservation, which every algorithm does exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

S = TypeVar("S")

__all__ = ["Decision", "RateAlgorithm", "decide"]


class RateAlgorithm(Protocol[S]):
    """The contract of one rate-limit algorithm over states of type ``S``."""

    @property
    def max_cost(self) -> int:
        """The largest cost that can ever be admitted; a larger one is refused at once."""
        ...

    @property
    def horizon(self) -> float:
        """Seconds after its last admission (with no reservation pending) within which any
        state becomes fresh; stores keep idle keys at least this long."""
        ...

    def reserve(
        self, state: S | None, now: float, cost: int, max_wait: float
    ) -> tuple[S, float, bool]:
        """Try to admit ``cost`` no later than ``now + max_wait``.

        Returns ``(new_state, at, admitted)``. Admitted: the cost is committed and due at
        ``at`` (``at == now``: at once). Refused: nothing was committed, the returned state is
        equivalent to the one given, and ``at`` is the earliest time the same request could be
        admitted (so ``at - now`` is the retry-after). ``cost`` must be in ``1..max_cost``.
        The state may be updated in place.
        """
        ...

    def cancel(self, state: S | None, now: float, cost: int, at: float) -> S | None:
        """Give back a reservation of ``cost`` made for time ``at``."""
        ...

    def inspect(self, state: S | None, now: float) -> tuple[int, float]:
        """``(remaining, reset_after)``: the cost admissible right now, and seconds until the
        state is fresh again (full capacity)."""
        ...

    def fresh_at(self, state: S) -> float:
        """The time from which ``state`` is equivalent to ``None`` (if nothing else happens)."""
        ...


@dataclass(frozen=True, slots=True)
class Decision:
    """One rate-limit decision, with what HTTP rate-limit headers need.

    ``limit`` is the most cost admissible at once (a token bucket's capacity, GCRA's burst, a
    window's ``max_requests``) and ``remaining`` counts against it; ``retry_after`` is 0 when
    allowed; ``reset_after`` is the time until the full limit is available again.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float

    def __bool__(self) -> bool:
        return self.allowed


def decide(
    algorithm: RateAlgorithm[S], state: S | None, now: float, cost: int
) -> tuple[S, Decision]:
    """Decide at once (no waiting) and describe the outcome; returns ``(new_state, decision)``."""
    new_state, at, allowed = algorithm.reserve(state, now, cost, 0.0)
    remaining, reset_after = algorithm.inspect(new_state, now)
    return new_state, Decision(
        allowed=allowed,
        limit=algorithm.max_cost,
        remaining=remaining,
        retry_after=0.0 if allowed else at - now,
        reset_after=reset_after,
    )

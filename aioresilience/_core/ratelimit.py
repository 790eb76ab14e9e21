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
that would hand capacity back into the past. :meth:`RateAlgorithm.cancel` gives back the
newest reservation exactly (a waiter's, or an admission refunded at once); asked later for
an older admission (``RateLimiter.refund`` of a request another limit refused), it gives back
only what of it is still held at ``now``: a window's count while that window lasts, a log's
entries not yet evicted, a bucket's units not yet drained, never a later admission's.

Every algorithm here also describes itself as a :class:`RatePolicy` (``algorithm.policy``):
a quota ``q`` over a window ``w``, what the IETF ``RateLimit-Policy`` field advertises. A
window algorithm has the obvious pair (``limit`` per ``window``). The bucket family (token
bucket, leaky-bucket meter and shaper, GCRA) is a rate plus a burst; it advertises **the burst
as** ``q`` **over the time an empty bucket takes to refill it as** ``w`` (GCRA at 100 per 60 s
with burst 10: ``q=10, w=6``), so a client that spends ``q`` every ``w`` is always admitted
and one reading ``q`` learns the most it may send at once. (The alternative, the long-run rate
as ``q`` over a long ``w``, would invite bursts the bucket refuses.) The policy's name is the
algorithm's kind until a limiter front-end renames it with :func:`with_policy_name`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple, Protocol, TypeVar

S = TypeVar("S")
A = TypeVar("A")

__all__ = ["Decision", "QuotaUnit", "RateAlgorithm", "RatePolicy", "decide", "with_policy_name"]

QuotaUnit = Literal["requests", "content-bytes", "concurrent-requests"]


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """What a limiter promises, as the IETF ``RateLimit-Policy`` field says it: ``quota``
    units (``q``, an int) per ``window`` seconds (``w``, a float here; the header renders it
    rounded up to whole seconds), counted in ``unit`` (``qu``; ``"requests"`` unless a cost
    measures something else). ``name`` is the policy's name in the fields (the limiter's)."""

    name: str
    quota: int
    window: float
    unit: QuotaUnit = "requests"


def with_policy_name(algorithm: A, name: str) -> A:
    """``algorithm`` with its :class:`RatePolicy` renamed ``name`` (a shallow copy: the
    algorithm given may be shared, and is left as it was). An algorithm with no ``policy``
    attribute (a custom one) is returned as it is."""
    policy = getattr(algorithm, "policy", None)
    if not isinstance(policy, RatePolicy) or policy.name == name:
        return algorithm
    renamed = copy.copy(algorithm)
    renamed.policy = replace(policy, name=name)  # type: ignore[attr-defined]
    return renamed


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
        """Give back a reservation of ``cost`` made for time ``at``: what of it is still
        held at ``now`` (see the module docstring)."""
        ...

    def inspect(self, state: S | None, now: float) -> tuple[int, float]:
        """``(remaining, reset_after)``: the cost admissible right now, and seconds until the
        quota is back: all of it for an algorithm that restores it whole (a fixed window's
        reset, a bucket full again), the next unit for one that restores it unit by unit (the
        sliding windows). ``(max_cost, 0.0)`` when the state is fresh."""
        ...

    def fresh_at(self, state: S) -> float:
        """The time from which ``state`` is equivalent to ``None`` (if nothing else happens)."""
        ...


class Decision(NamedTuple):
    """One rate-limit decision, with what HTTP rate-limit headers need.

    ``limit`` is the most cost admissible at once (a token bucket's capacity, GCRA's burst, a
    window's ``max_requests``) and ``remaining`` counts against it; ``retry_after`` is 0 when
    allowed; ``reset_after`` is the time until the quota is back (the ``t`` of the IETF
    ``RateLimit`` field): the full limit for a fixed window, a token or leaky bucket and GCRA,
    whose capacity waits for the client once restored; the next unit for the sliding windows,
    which restore the quota unit by unit as old requests leave the window, so that a client
    waiting for the full limit would leave part of it unused. ``policy``
    describes the limit (quota, window, name) for the ``RateLimit-Policy`` header; ``None``
    for an algorithm that does not describe itself, or a decision built without one. ``at``
    is the deciding state's stamp of an admission (the time on the limiter's clock in this
    process; a shared store's own, such as Redis's server time in microseconds), what
    :meth:`~aioresilience.RateLimiter.refund` gives back by; ``None`` when there is nothing
    to give back (a refusal, an admission by a failure policy).

    Truthy when allowed. Immutable: a named tuple rather than a frozen dataclass because one
    is made per decision, on the hot path of every limited web request: a frozen dataclass's
    ``__init__`` (six ``object.__setattr__`` calls) was 10,100 of the 27,000 instructions of
    ``RateLimiter.check`` (callgrind, 3.11), the tuple's 1,750.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    policy: RatePolicy | None = None
    at: float | None = None

    def __bool__(self) -> bool:
        return self.allowed


#: ``new_decision(Decision, (allowed, limit, remaining, retry_after, reset_after, policy, at))``:
#: a :class:`Decision` without the frame of its generated ``__new__`` (as ``Decision._make``
#: does), for the per-decision paths.
new_decision = tuple.__new__


def decide(
    algorithm: RateAlgorithm[S], state: S | None, now: float, cost: int
) -> tuple[S, Decision]:
    """Decide at once (no waiting) and describe the outcome; returns ``(new_state, decision)``."""
    new_state, at, allowed = algorithm.reserve(state, now, cost, 0.0)
    remaining, reset_after = algorithm.inspect(new_state, now)
    return new_state, new_decision(
        Decision,
        (
            allowed,
            algorithm.max_cost,
            remaining,
            0.0 if allowed else at - now,
            reset_after,
            getattr(algorithm, "policy", None),
            now if allowed else None,
        ),
    )

"""Token bucket: capacity ``C`` tokens, refilled at ``r`` tokens per second, lazily.

The textbook form keeps ``(tokens, last)`` and computes
``tokens = min(C, tokens + (now - last) * r)``. We keep one number instead, the instant the
bucket would be full again, ``full_at``; then ``tokens(now) = C - max(0, full_at - now) * r``,
and taking ``n`` tokens moves ``full_at`` to ``max(full_at, now) + n / r``. That is exactly GCRA
with emission interval ``1/r`` and tolerance ``C/r`` (the two are the same algorithm, see
ITU-T I.371), so the arithmetic lives in :mod:`.gcra` and this module only maps the vocabulary.
Reserving while short of tokens is taking them "on credit": ``full_at`` moves past ``now + C/r``
and the reservation is due when the debt is repaid, ``(n - tokens) / r`` later.
"""

from __future__ import annotations

from .gcra import GCRAAlgorithm
from .ratelimit import RatePolicy

__all__ = ["TokenBucketAlgorithm"]


class TokenBucketAlgorithm(GCRAAlgorithm):
    """A token bucket of ``capacity`` tokens refilled at ``refill_rate`` per second."""

    __slots__ = ("capacity", "refill_rate")

    def __init__(self, capacity: int, refill_rate: float) -> None:
        super().__init__(interval=1.0 / refill_rate, burst=capacity)
        self.capacity = capacity
        self.refill_rate = refill_rate
        # A full bucket over the time an empty one takes to refill (see _core.ratelimit).
        self.policy = RatePolicy("token-bucket", capacity, capacity / refill_rate)

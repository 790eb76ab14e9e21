"""Rolling windows of call outcomes for the circuit breaker, O(1) per recorded call.

- :class:`CountWindow`: the last ``size`` outcomes, in a ring with running totals.
- :class:`TimeWindow`: outcomes of the last ``seconds``, in ``buckets`` equal time buckets; a
  bucket is cleared when time moves past it, so idle time costs nothing.

Both report ``(calls, failures, slow_calls)``.
"""

from __future__ import annotations

__all__ = ["CountWindow", "TimeWindow"]

_FAILED = 1
_SLOW = 2


class CountWindow:
    __slots__ = ("_index", "_ring", "calls", "failures", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self._ring: list[int] = []
        self._index = 0
        self.calls = self.failures = self.slow = 0

    def record(self, now: float, failed: bool, slow: bool) -> None:
        code = (_FAILED if failed else 0) | (_SLOW if slow else 0)
        ring = self._ring
        if len(ring) < self.size:
            ring.append(code)
            self.calls += 1
        else:
            old = ring[self._index]
            ring[self._index] = code
            self._index = (self._index + 1) % self.size
            self.failures -= old & _FAILED
            self.slow -= (old & _SLOW) >> 1
        self.failures += failed
        self.slow += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        return self.calls, self.failures, self.slow

    def reset(self) -> None:
        self._ring.clear()
        self._index = 0
        self.calls = self.failures = self.slow = 0


class TimeWindow:
    __slots__ = ("_buckets", "_width", "buckets", "calls", "failures", "seconds", "slow")

    def __init__(self, seconds: float, buckets: int = 10) -> None:
        self.seconds = seconds
        self.buckets = buckets
        self._width = seconds / buckets
        # Per bucket: [epoch (bucket number since time 0), calls, failures, slow]
        self._buckets = [[-1, 0, 0, 0] for _ in range(buckets)]
        self.calls = self.failures = self.slow = 0

    def _advance(self, now: float) -> list[int]:
        epoch = int(now // self._width)
        bucket = self._buckets[epoch % self.buckets]
        if bucket[0] != epoch:
            self._evict(epoch)
        return bucket

    def _evict(self, epoch: int) -> None:
        """Clear every bucket older than the window ending at ``epoch``."""
        oldest = epoch - self.buckets + 1
        for bucket in self._buckets:
            if bucket[0] < oldest or bucket[0] == -1:
                self.calls -= bucket[1]
                self.failures -= bucket[2]
                self.slow -= bucket[3]
                bucket[1] = bucket[2] = bucket[3] = 0
                bucket[0] = -1
        target = self._buckets[epoch % self.buckets]
        target[0] = epoch

    def record(self, now: float, failed: bool, slow: bool) -> None:
        bucket = self._advance(now)
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        self._advance(now)
        return self.calls, self.failures, self.slow

    def reset(self) -> None:
        for bucket in self._buckets:
            bucket[:] = [-1, 0, 0, 0]
        self.calls = self.failures = self.slow = 0

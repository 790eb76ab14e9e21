"""Leaky bucket, in its two distinct meanings.

*Meter*: a bucket of ``capacity`` units that drains at ``leak_rate`` units per second; a request
of cost ``n`` is admitted when ``n`` more units fit, else refused. It is GCRA with emission
interval ``1/leak_rate`` and tolerance ``capacity/leak_rate``.

*Shaper* (a queue): requests join a bounded queue of ``capacity`` units and leave it at exactly
``leak_rate`` per second, so the output is smooth whatever the input. It is GCRA with no burst
(tolerance of one interval: each unit leaves one interval after the previous one) where a
reservation may be at most ``capacity`` intervals ahead: a longer wait means the queue is full.
"""

from __future__ import annotations

from .gcra import GCRAAlgorithm

__all__ = ["LeakyBucketMeter", "LeakyBucketShaper"]


class LeakyBucketMeter(GCRAAlgorithm):
    """Admit-or-refuse leaky bucket of ``capacity`` units draining at ``leak_rate``/s."""

    __slots__ = ("capacity", "leak_rate")

    def __init__(self, capacity: int, leak_rate: float) -> None:
        super().__init__(interval=1.0 / leak_rate, burst=capacity)
        self.capacity = capacity
        self.leak_rate = leak_rate


class LeakyBucketShaper(GCRAAlgorithm):
    """Queue of ``capacity`` units emptied at a constant ``leak_rate``/s."""

    __slots__ = ("capacity", "leak_rate")

    def __init__(self, capacity: int, leak_rate: float) -> None:
        interval = 1.0 / leak_rate
        # burst=1: the first unit of an idle queue leaves at once, each next one an interval
        # later. The k-th queued unit waits k intervals, so "at most `capacity` queued" is
        # "wait at most capacity * interval".
        super().__init__(interval=interval, burst=1, max_delay=capacity * interval)
        self.max_cost = capacity
        self.capacity = capacity
        self.leak_rate = leak_rate

"""Adaptive concurrency limits (Netflix concurrency-limits), pure.

After each call the limiter feeds ``(rtt, in_flight, dropped)`` to :meth:`update`, which
returns the new (float) limit; the front-end clamps it to ``[min_limit, max_limit]``.

- :class:`AIMD`: dropped or ``rtt > timeout`` -> ``limit * backoff`` (0.9); else, when the
  limit is in use (``in_flight * 2 >= limit``), ``limit + 1``.
- :class:`Vegas`: ``rtt_noload`` is the smallest rtt seen (forgotten now and then, so a faster
  path is noticed); ``queue = ceil(limit * (1 - rtt_noload / rtt))``; with
  ``L = max(1, floor(log10 limit))``: ``alpha = 3L``, ``beta = 6L``; dropped -> ``limit - L``;
  app-limited (``in_flight * 2 < limit``) -> unchanged; ``queue <= L`` -> ``limit + beta``;
  ``queue < alpha`` -> ``limit + L``; ``queue > beta`` -> ``limit - L``.
- :class:`Gradient2`: ``long`` rtt is an EMA, ``short`` the sample; ``gradient =
  clamp(tolerance * long / short, 0.5, 1)``; ``new = limit * gradient + queue_size``, smoothed:
  ``limit = limit * (1 - smoothing) + new * smoothing``. App-limited calls do not raise it.
"""

from __future__ import annotations

import math

__all__ = ["AIMD", "Gradient2", "Vegas"]


class AIMD:
    __slots__ = ("backoff", "timeout")

    def __init__(self, *, timeout: float = 5.0, backoff: float = 0.9) -> None:
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive finite number, got {timeout!r}")
        if not 0 < backoff < 1:
            raise ValueError(f"backoff must be in (0, 1), got {backoff!r}")
        self.timeout = timeout
        self.backoff = backoff

    def update(self, limit: float, rtt: float, in_flight: int, dropped: bool) -> float:
        if dropped or rtt > self.timeout:
            return limit * self.backoff
        if in_flight * 2 >= limit:
            return limit + 1
        return limit

    def __repr__(self) -> str:
        return f"AIMD(timeout={self.timeout:g}, backoff={self.backoff:g})"


class Vegas:
    __slots__ = ("_countdown", "probe_multiplier", "rtt_noload")

    def __init__(self, *, probe_multiplier: int = 30) -> None:
        if not isinstance(probe_multiplier, int) or probe_multiplier < 1:
            raise ValueError(f"probe_multiplier must be an int >= 1, got {probe_multiplier!r}")
        self.probe_multiplier = probe_multiplier
        self.rtt_noload = math.inf
        self._countdown = -1

    def update(self, limit: float, rtt: float, in_flight: int, dropped: bool) -> float:
        if rtt <= 0:  # no measurable latency: nothing to learn from it, but a drop is one
            return limit - max(1, math.floor(math.log10(max(limit, 1.0)))) if dropped else limit
        if self._countdown < 0:
            self._countdown = max(1, int(self.probe_multiplier * limit))
        self._countdown -= 1
        if self._countdown == 0:
            # Re-probe now and then (every probe_multiplier x limit updates, as Netflix does):
            # take this rtt as the floor, so a lasting change of the no-load rtt is learned.
            self._countdown = -1
            self.rtt_noload = rtt
            return limit
        if rtt < self.rtt_noload:
            self.rtt_noload = rtt
        step = max(1, math.floor(math.log10(max(limit, 1.0))))
        if dropped:
            return limit - step
        if in_flight * 2 < limit:
            return limit
        queue = math.ceil(limit * (1 - self.rtt_noload / rtt)) if rtt > 0 else 0
        alpha, beta = 3 * step, 6 * step
        if queue <= step:
            return limit + beta
        if queue < alpha:
            return limit + step
        if queue > beta:
            return limit - step
        return limit

    def __repr__(self) -> str:
        return f"Vegas(probe_multiplier={self.probe_multiplier})"


class Gradient2:
    __slots__ = ("long_rtt", "long_window", "queue_size", "smoothing", "tolerance")

    def __init__(
        self,
        *,
        tolerance: float = 1.5,
        smoothing: float = 0.2,
        queue_size: float = 4.0,
        long_window: int = 600,
    ) -> None:
        if not (tolerance >= 1 and math.isfinite(tolerance)):
            raise ValueError(f"tolerance must be a finite number >= 1, got {tolerance!r}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing!r}")
        if not (queue_size >= 0 and math.isfinite(queue_size)):
            raise ValueError(f"queue_size must be a finite number >= 0, got {queue_size!r}")
        if not isinstance(long_window, int) or long_window < 1:
            raise ValueError(f"long_window must be an int >= 1, got {long_window!r}")
        self.tolerance = tolerance
        self.smoothing = smoothing
        self.queue_size = queue_size
        self.long_window = long_window
        self.long_rtt = 0.0

    def update(self, limit: float, rtt: float, in_flight: int, dropped: bool) -> float:
        if rtt <= 0:  # no measurable latency: nothing to learn from it, but a drop is one
            if not dropped or in_flight * 2 < limit:
                return limit
            new_limit = limit * 0.5 + self.queue_size
            return limit * (1 - self.smoothing) + new_limit * self.smoothing
        if self.long_rtt == 0.0:
            self.long_rtt = rtt
        else:
            self.long_rtt += (rtt - self.long_rtt) * 2 / (self.long_window + 1)
        if self.long_rtt / rtt > 2:
            # The long-term rtt lags far behind a recovery: pull it down (as Netflix does).
            self.long_rtt *= 0.95
        if in_flight * 2 < limit:
            return limit  # app-limited: no evidence to grow on
        gradient = max(0.5, min(1.0, self.tolerance * self.long_rtt / rtt))
        if dropped:
            gradient = 0.5
        new_limit = limit * gradient + self.queue_size
        return limit * (1 - self.smoothing) + new_limit * self.smoothing

    def __repr__(self) -> str:
        return f"Gradient2(tolerance={self.tolerance:g}, smoothing={self.smoothing:g})"

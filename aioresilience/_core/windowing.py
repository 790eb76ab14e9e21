"""Window indices for the window algorithms, defined once: window ``k`` is ``[k*W, (k+1)*W)``
and the window of time ``t`` is ``int(t // W)``.

A reservation's time is computed as ``k*W`` (or ``(k + f)*W``); floating point may put that
product an ulp outside window ``k``. :func:`time_in` nudges it back, so the window a time was
counted in is always recovered by ``int(t // W)`` — by the admission test and by ``cancel``.
"""

from __future__ import annotations

import math

__all__ = ["reachable", "time_in"]


def time_in(t: float, index: int, width: float) -> float:
    """``t``, moved by the fewest ulps needed for ``int(t // width) == index``."""
    while int(t // width) < index:
        t = math.nextafter(t, math.inf)
    while int(t // width) > index:
        t = math.nextafter(t, -math.inf)
    return t


def reachable(now: float, at: float) -> float:
    """``at``, moved up by the fewest ulps for ``now + (at - now) >= at``: a caller that sleeps
    the retry-after ``at - now`` from ``now`` is there (``now + (at - now)`` may round to an
    ulp before ``at``, and it would be refused again)."""
    t = at
    while now + (t - now) < at:
        t = math.nextafter(t, math.inf)
    return t

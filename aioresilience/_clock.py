"""The one place front-ends read time from (DESIGN rule 1).

Everything reads the *running event loop's* clock, so a virtual-time loop
(:mod:`aioresilience.testing`) controls every sleep, wait and deadline. ``_core`` never calls
this: it receives ``now`` as an argument.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["now"]

_get_running_loop = asyncio.get_running_loop
_monotonic = time.monotonic


def now() -> float:
    """Seconds on the running loop's clock; ``time.monotonic()`` outside a loop.

    Outside a loop the two agree for the default asyncio loop (which uses ``time.monotonic``).
    """
    try:
        loop = _get_running_loop()
    except RuntimeError:
        return _monotonic()
    return loop.time()

"""The one place front-ends read time from (DESIGN rule 1).

``now()`` is the running event loop's clock, so a virtual-time loop
(:mod:`aioresilience.testing`) controls every sleep, wait and deadline. ``_core`` never calls
this: it receives ``now`` as an argument.

Why ``now`` is a swapped function and not ``get_running_loop().time()``: on CPython 3.11,
``get_running_loop()`` makes a ``getpid()`` system call each time, and ``BaseEventLoop.time`` is
a Python-level method around ``time.monotonic``; together they cost more than a whole rate-limit
decision. Every production loop (asyncio's own, uvloop) runs on ``CLOCK_MONOTONIC``, so ``now``
*is* ``time.monotonic`` while no loop with a clock of its own exists. A loop that keeps its own
time (the virtual-time loop) calls :func:`register_loop_clock` when created and
:func:`unregister_loop_clock` when closed; meanwhile ``now`` asks the running loop. Front-ends
must therefore call ``_clock.now()`` through the module, never keep a reference to it.

Where the loop is at hand, read ``loop.time()`` instead (the timeout does): a deadline is then
on the clock of the loop whose timer fires it (uvloop's ``time()`` counts whole milliseconds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["loop_now", "now", "register_loop_clock", "unregister_loop_clock"]

_monotonic = time.monotonic
_get_running_loop = asyncio.get_running_loop


def loop_now() -> float:
    """The running loop's own ``time()``; ``time.monotonic()`` outside a loop."""
    try:
        loop = _get_running_loop()
    except RuntimeError:  # no running loop: the documented answer of get_running_loop()
        return _monotonic()
    return loop.time()


now: Callable[[], float] = _monotonic
_own_clock_loops = 0


def register_loop_clock() -> None:
    """A loop whose ``time()`` is not ``CLOCK_MONOTONIC`` now exists: read clocks from loops."""
    global now, _own_clock_loops
    _own_clock_loops += 1
    now = loop_now


def unregister_loop_clock() -> None:
    global now, _own_clock_loops
    _own_clock_loops = max(0, _own_clock_loops - 1)
    if not _own_clock_loops:
        now = _monotonic

"""Tools for testing code that uses aioresilience (shipped in the wheel).

- :class:`VirtualTimeLoop` and :func:`run`: an event loop whose clock jumps to the next timer
  when nothing is ready, so time-based behaviour is tested without sleeping; when nothing can
  ever wake it, it raises :class:`DeadlockError` naming the waiting tasks instead of hanging.
- :class:`ManualClock`: a clock moved by hand (``advance``/``jump_to``), to hand to a primitive
  or a pipeline as ``clock=``; its time, deadlines and waits then follow the test, on any loop.
- ``aioresilience.testing.pytest_plugin``: runs pytest-asyncio tests on that loop
  (``-p aioresilience.testing.pytest_plugin``, or ``pytest_plugins = [...]`` in a conftest).
- :class:`RedisServer`: a throwaway ``redis-server`` on a free loopback port, with outages on
  demand (kill, pause, restart), for tests of code that uses the Redis store.
"""

from ._manual import ManualClock
from ._redis_server import RedisServer
from ._virtual import DeadlockError, VirtualClockSelector, VirtualTimeLoop, run

__all__ = [
    "DeadlockError",
    "ManualClock",
    "RedisServer",
    "VirtualClockSelector",
    "VirtualTimeLoop",
    "run",
]

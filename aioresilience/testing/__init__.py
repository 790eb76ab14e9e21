"""Tools for testing code that uses aioresilience (shipped in the wheel).

- :class:`VirtualTimeLoop` and :func:`run`: an event loop whose clock jumps to the next timer
  when nothing is ready, so time-based behaviour is tested without sleeping.
- ``aioresilience.testing.pytest_plugin``: runs pytest-asyncio tests on that loop
  (``-p aioresilience.testing.pytest_plugin``, or ``pytest_plugins = [...]`` in a conftest).
"""

from ._virtual import VirtualClockSelector, VirtualTimeLoop, run

__all__ = ["VirtualClockSelector", "VirtualTimeLoop", "run"]

"""CPython's own ``asyncio.Semaphore`` tests, run against :class:`aioresilience.Bulkhead`.

The tests are ``test.test_asyncio.test_locks.SemaphoreTests`` from the running interpreter's
installed ``test`` package (never copied into this repository); where there is none the
module is skipped, saying so. A bulkhead is a bounded semaphore (``release()`` without a slot
held raises ``ValueError``; at least one slot) with an unbounded wait queue here
(``max_queue=sys.maxsize``), so the tests run on a thin shim, bound to ``asyncio.Semaphore``
and ``asyncio.BoundedSemaphore`` for each test only:

- ``Semaphore(value)`` is a ``Bulkhead(value + 8)`` with 8 slots taken at once
  (``try_acquire``), so the releases beyond acquisitions an unbounded semaphore allows (the
  tests' ``Semaphore(0)`` then ``release()``) free those; ``BoundedSemaphore(value)`` is a
  plain ``Bulkhead(value)``;
- ``acquire()`` awaits ours and returns ``True`` (ours returns ``None``); ``locked()`` (which
  ours does not have) is "every slot busy or someone queued" from ``statistics()``; ``_value``
  is the free slots; ``_waiters`` is the bulkhead's own queue of futures.

Not run (:data:`NOT_RUN`), each a documented difference or an API we do not have:

- ``test_repr``, ``test_semaphore``: asyncio's repr text and class name in messages;
- ``test_acquire_fifo_order_2`` and (3.13+) ``test_acquire_fifo_order_4``: they assert
  asyncio's wake-up model, where a woken waiter that has not run yet holds no permit
  (``_value`` still counts it, and the semaphore stays ``locked()`` for everyone until it
  runs). Ours hands the released slot itself to the longest waiter (README, "Bulkhead": no
  barging), so that waiter already holds it and a free slot nobody waits for can be taken at
  once: the grant order is FIFO, the order in which granted tasks resume is the loop's.

Real-time tests (CPython's, 10 ms sleeps), well under 0.2 s in all.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import unittest
from collections import deque
from typing import Any
from unittest import mock

import pytest

from aioresilience import Bulkhead

try:
    cpython: Any = importlib.import_module("test.test_asyncio.test_locks")
except ImportError:
    pytest.skip(
        f"Python {sys.version.split()[0]} at {sys.executable} has no test.test_asyncio "
        "(the interpreter's own test package is not installed): CPython's semaphore tests "
        "cannot run here",
        allow_module_level=True,
    )

# Slots held from the start of an unbounded shim, for the tests' releases beyond acquisitions.
HEADROOM = 8


class _Semaphore:
    """``asyncio.Semaphore`` over a :class:`Bulkhead` (see the module docstring)."""

    bounded = False

    def __init__(self, value: int = 1) -> None:
        extra = 0 if self.bounded or value < 0 else HEADROOM
        self.bulkhead = Bulkhead(value + extra, max_queue=sys.maxsize)  # ValueError if < 1
        for _ in range(extra):
            assert self.bulkhead.try_acquire()

    @property
    def _value(self) -> int:
        stats = self.bulkhead.statistics()
        return stats.max_concurrent - stats.active

    @property
    def _waiters(self) -> deque[asyncio.Future[None]]:
        return self.bulkhead._waiters

    def locked(self) -> bool:
        stats = self.bulkhead.statistics()
        return stats.active == stats.max_concurrent or stats.queued > 0

    async def acquire(self) -> bool:
        await self.bulkhead.acquire()
        return True

    def release(self) -> None:
        self.bulkhead.release()

    async def __aenter__(self) -> None:
        await self.bulkhead.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.bulkhead.__aexit__(*exc_info)


class _BoundedSemaphore(_Semaphore):
    bounded = True


_WAKE_UP = (
    "asserts asyncio's wake-up model (a woken waiter holds no permit until it runs); ours "
    "hands the slot itself to the longest waiter"
)
NOT_RUN = {
    "test_repr": "asserts asyncio's repr text '[unlocked, value:1]'",
    "test_semaphore": "asserts the class name 'Semaphore' in the TypeError of 'await sem'",
    "test_acquire_fifo_order_2": _WAKE_UP,
    "test_acquire_fifo_order_4": _WAKE_UP,
}


class TestCPythonSemaphoreTestsOnBulkhead(cpython.SemaphoreTests):  # type: ignore[misc]
    """CPython's ``SemaphoreTests``, with ``asyncio.Semaphore`` bound to the bulkhead shim."""

    def setUp(self) -> None:
        super().setUp()
        self.enterContext(mock.patch.object(asyncio, "Semaphore", _Semaphore))
        self.enterContext(mock.patch.object(asyncio, "BoundedSemaphore", _BoundedSemaphore))

    async def test_the_shim_runs_bulkheads(self) -> None:
        """The binding is in effect while a test runs (so the tests above test ours)."""
        sem = asyncio.Semaphore(1)
        assert isinstance(sem, _Semaphore) and isinstance(sem.bulkhead, Bulkhead)
        async with sem:
            assert sem.locked() and sem.bulkhead.statistics().active == HEADROOM + 1
        with pytest.raises(ValueError, match="release"):
            asyncio.BoundedSemaphore(1).release()


for _name, _reason in NOT_RUN.items():
    _test = getattr(cpython.SemaphoreTests, _name, None)
    if _test is not None:
        setattr(TestCPythonSemaphoreTestsOnBulkhead, _name, unittest.skip(_reason)(_test))


def test_the_cpython_suite_was_found_and_is_not_empty() -> None:
    """A renamed or emptied upstream class must not make this module pass vacuously."""
    names = {name for name in dir(cpython.SemaphoreTests) if name.startswith("test_")}
    assert len(names) >= 12
    assert {"test_repr", "test_semaphore", "test_acquire_fifo_order_2"} <= names

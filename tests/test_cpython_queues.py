"""CPython's own tests of ``asyncio.Queue``, run against :class:`aioresilience.BackpressureQueue`.

The tests are ``QueueBasicTests``, ``QueueGetTests``, ``QueuePutTests``, ``QueueJoinTests`` and
(Python 3.13+) ``QueueShutdownTests`` of ``test.test_asyncio.test_queues`` from the running
interpreter's installed ``test`` package (never copied into this repository). Each runs with
``asyncio.Queue`` bound to a ``BackpressureQueue`` with ``policy="block"`` (``maxsize=0``,
asyncio's "unbounded", becomes ``sys.maxsize``), ``asyncio.QueueFull`` to our
:class:`QueueFull` and, on 3.13+, ``asyncio.QueueShutDown`` to our :class:`QueueClosed` (which
subclasses it there), for the duration of that test only. ``shutdown(immediate=False)`` is
our ``close()``; ``shutdown(immediate=True)`` is ``close()`` then ``drain()`` (the README's
"close() follows asyncio.Queue.shutdown()"). Where the interpreter has no ``test`` package
the module is skipped, saying so. ``LifoQueue``/``PriorityQueue`` tests are out of scope (we
have no such orders).

Not run (:data:`NOT_RUN`), each a documented difference or an API we do not have:

- ``test_repr``, ``test_str``, ``test_format`` (both): asyncio's repr text / private
  ``_format()``; ours reads ``<BackpressureQueue 'name' 1/2 policy=block ...>``.
- ``test_generic_alias``: ``asyncio.Queue[int]`` is a ``types.GenericAlias``; ours is a
  ``typing.Generic`` (its alias is ``typing._GenericAlias``).
- ``test_float_maxsize``: ``maxsize=1.3``; ours takes an ``int`` only (a float is refused at
  construction, naming the parameter: the project's rule for bad input).
- ``test_get_with_putters``: appends a bare future to the private ``_putters``; ours holds
  ``(item, future)`` pairs there.

The tests that count the private ``_getters``/``_putters`` (no waiter left behind after a
cancellation) do run: ours keep waiters under those names too. Real-time tests (CPython's, a
few 10-100 ms waits), about 0.3 s in all.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import unittest
from typing import Any
from unittest import mock

import pytest

import aioresilience
from aioresilience import BackpressureQueue, QueueClosed, QueueFull

try:
    cpython: Any = importlib.import_module("test.test_asyncio.test_queues")
except ImportError:
    pytest.skip(
        f"Python {sys.version.split()[0]} at {sys.executable} has no test.test_asyncio "
        "(the interpreter's own test package is not installed): CPython's queue tests "
        "cannot run here",
        allow_module_level=True,
    )


class _Queue(BackpressureQueue[Any]):
    """``asyncio.Queue``'s constructor and ``shutdown()`` over ours (policy ``block``)."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize if maxsize > 0 else sys.maxsize, policy="block")

    def shutdown(self, immediate: bool = False) -> None:
        self.close()
        if immediate:
            self.drain()


_REPR = "asserts asyncio's repr/_format text; ours is '<BackpressureQueue 'name' n/max ...>'"
NOT_RUN: dict[str, dict[str, str]] = {
    "QueueBasicTests": {
        "test_repr": _REPR,
        "test_str": _REPR,
        "test_generic_alias": "asyncio.Queue[int] is a types.GenericAlias; ours is a "
        "typing.Generic alias",
    },
    "QueueGetTests": {
        "test_get_with_putters": "appends a bare future to the private _putters; ours holds "
        "(item, future) pairs",
    },
    "QueuePutTests": {
        "test_float_maxsize": "maxsize=1.3: ours takes an int only (refused at construction)",
    },
    "QueueJoinTests": {"test_format": _REPR},
    "QueueShutdownTests": {"test_format": _REPR},
}


def _bind(case: unittest.TestCase) -> None:
    case.enterContext(mock.patch.object(asyncio, "Queue", _Queue))
    case.enterContext(mock.patch.object(asyncio, "QueueFull", QueueFull))
    if hasattr(asyncio, "QueueShutDown"):
        case.enterContext(mock.patch.object(asyncio, "QueueShutDown", QueueClosed))


def _on_ours(name: str) -> type:
    base = getattr(cpython, name)

    class OnAioresilience(base):  # type: ignore[misc, valid-type]
        def setUp(self) -> None:
            super().setUp()
            _bind(self)

        async def test_the_shim_runs_aioresilience_queues(self) -> None:
            """The binding is in effect while a test runs (so the tests above test ours)."""
            assert isinstance(asyncio.Queue(), aioresilience.BackpressureQueue)

    if hasattr(base, "q_class"):  # the mixins' classes hold asyncio.Queue itself
        OnAioresilience.q_class = _Queue
    for test, reason in NOT_RUN[name].items():
        method = getattr(base, test, None)
        if method is not None:
            setattr(OnAioresilience, test, unittest.skip(reason)(method))
    OnAioresilience.__name__ = OnAioresilience.__qualname__ = f"TestCPython{name}OnAioresilience"
    return OnAioresilience


TestCPythonQueueBasicTestsOnAioresilience = _on_ours("QueueBasicTests")
TestCPythonQueueGetTestsOnAioresilience = _on_ours("QueueGetTests")
TestCPythonQueuePutTestsOnAioresilience = _on_ours("QueuePutTests")
TestCPythonQueueJoinTestsOnAioresilience = _on_ours("QueueJoinTests")
if hasattr(cpython, "QueueShutdownTests"):  # Python 3.13+
    TestCPythonQueueShutdownTestsOnAioresilience = _on_ours("QueueShutdownTests")


def test_the_cpython_suite_was_found_and_is_not_empty() -> None:
    """A renamed or emptied upstream class must not make this module pass vacuously."""
    for name, skipped in NOT_RUN.items():
        if name == "QueueShutdownTests" and not hasattr(cpython, name):
            continue
        names = {test for test in dir(getattr(cpython, name)) if test.startswith("test_")}
        assert len(names - set(skipped)) >= 2, name
        assert set(skipped) <= names, name

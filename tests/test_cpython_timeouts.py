"""CPython's own tests of ``asyncio.timeout``, run against :func:`aioresilience.timeout`.

The tests are ``test.test_asyncio.test_timeouts.TimeoutTests`` from the running interpreter's
installed ``test`` package (never copied into this repository): each runs with the names it
uses, ``asyncio.timeout``, ``asyncio.timeout_at`` and ``asyncio.Timeout``, bound to ours for
the duration of that test only. So every interpreter holds us to its own asyncio's behaviour
(3.13's tests check the exception context that 3.13 changed). Where the interpreter has no
``test`` package (Debian's python3.x ships it separately, in libpython3.x-testsuite), the
module is skipped, saying so.

Not run: the tests of ``repr`` text (:data:`REPR_TESTS`): ours reads
``<timeout seconds=10 when=... state=entered>``, asyncio's ``<Timeout [active] when=...>``.
These are real-time tests (CPython's, with their 10-100 ms sleeps), about 0.5 s in all.
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

try:
    cpython: Any = importlib.import_module("test.test_asyncio.test_timeouts")
except ImportError:
    pytest.skip(
        f"Python {sys.version.split()[0]} at {sys.executable} has no test.test_asyncio "
        "(the interpreter's own test package is not installed): CPython's timeout tests "
        "cannot run here",
        allow_module_level=True,
    )

REPR_TESTS = {
    name: "asserts asyncio's repr text '<Timeout [state] when=...>'; ours is "
    "'<timeout seconds=... when=... state=...>'"
    for name in (
        "test_repr_active",
        "test_repr_expired",
        "test_repr_finished",
        "test_repr_disabled",
    )
}


class TestCPythonTimeoutsOnAioresilience(cpython.TimeoutTests):  # type: ignore[misc]
    """Every test of CPython's ``TimeoutTests``, with asyncio's timeout names bound to ours."""

    def setUp(self) -> None:
        super().setUp()
        for name, ours in (
            ("timeout", aioresilience.timeout),
            ("timeout_at", aioresilience.timeout_at),
            ("Timeout", aioresilience.timeout),
        ):
            self.enterContext(mock.patch.object(asyncio, name, ours))

    async def test_the_shim_runs_aioresilience_timeouts(self) -> None:
        """The binding is in effect while a test runs (so the tests above test ours)."""
        async with asyncio.timeout(1) as limit, asyncio.timeout_at(None) as at:
            await asyncio.sleep(0)
            assert isinstance(limit, aioresilience.timeout)
            assert isinstance(at, aioresilience.timeout)


for _name, _reason in REPR_TESTS.items():
    _test = getattr(cpython.TimeoutTests, _name, None)
    if _test is not None:
        setattr(TestCPythonTimeoutsOnAioresilience, _name, unittest.skip(_reason)(_test))


def test_the_cpython_suite_was_found_and_is_not_empty() -> None:
    """A renamed or emptied upstream class must not make this module pass vacuously."""
    names = [name for name in dir(cpython.TimeoutTests) if name.startswith("test_")]
    assert len(names) >= 25
    assert set(REPR_TESTS) <= set(names)

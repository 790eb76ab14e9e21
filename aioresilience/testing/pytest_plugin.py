"""pytest plugin: run pytest-asyncio (>= 1.3) tests on a virtual-time loop.

Enable it with ``-p aioresilience.testing.pytest_plugin`` or
``pytest_plugins = ["aioresilience.testing.pytest_plugin"]`` in a top-level conftest. Every
asyncio test then runs on :class:`~aioresilience.testing.VirtualTimeLoop`; a test marked
``@pytest.mark.real_time`` runs on a normal asyncio loop instead (for tests that wait on threads
or sockets with timeouts). The ``virtual_clock`` fixture returns the running loop, whose
``time()`` and ``advance()`` a test can use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import pytest_asyncio

from ._virtual import VirtualTimeLoop

__all__ = ["pytest_asyncio_loop_factories", "pytest_configure", "virtual_clock"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_time: run this asyncio test on a normal loop, not in virtual time"
    )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.get_closest_marker("real_time") is not None:
        return {"real_time": asyncio.new_event_loop}
    return {"virtual_time": VirtualTimeLoop}


@pytest_asyncio.fixture
async def virtual_clock() -> VirtualTimeLoop:
    """The running :class:`VirtualTimeLoop` (use from an async test)."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualTimeLoop):
        raise RuntimeError("virtual_clock needs the test to run on a VirtualTimeLoop")
    return loop

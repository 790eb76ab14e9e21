"""Shared test configuration. Every async test runs in virtual time (aioresilience.testing
plugin, enabled in pyproject's addopts)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from aioresilience.testing import RedisServer
from aioresilience.testing._redis_server import INSTALL_HINT

pytest_plugins = ["pytester"]  # tests of the pytest plugin run pytest on test files of their own

# CI runs the same examples every time (a failure there is reproducible from the log);
# local runs explore new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session, started by the suite itself on a free port."""
    if not RedisServer.available():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis tests, but redis-server is missing; {INSTALL_HINT}")
        pytest.skip(f"redis-server not found; {INSTALL_HINT}")
    with RedisServer() as server:
        yield server

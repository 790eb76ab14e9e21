"""Shared test configuration. Every async test runs in virtual time (aioresilience.testing
plugin, enabled in pyproject's addopts)."""

from __future__ import annotations

import gc
import os
from collections.abc import Generator, Iterator

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "starts_first: a module taking seconds (real-time waits or long computations), collected"
        " first so that pytest-xdist runs it beside the rest of the suite, not after it",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: the marked modules first, every module's tests in their own order.
    items.sort(key=lambda item: item.get_closest_marker("starts_first") is None)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session, started by the suite itself on a free port."""
    if not RedisServer.available():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis tests, but redis-server is missing; {INSTALL_HINT}")
        pytest.skip(f"redis-server not found; {INSTALL_HINT}")
    with RedisServer() as server:
        yield server


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture(autouse=True)
def _redis_garbage_stays_with_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A Redis test that fails midway leaves connections open; collected later, they warn
    (ResourceWarning, an error here) inside whatever test the garbage collector happens to run
    in. Collecting at the end of a failed Redis test keeps the report on the test at fault.
    Only a failed one: a full collection costs 0.2-1.4 s late in the suite (some 250,000
    objects), and after every Redis test that was most of the suite's time."""
    yield
    if "redis_server" in request.fixturenames and request.node.stash.get(_FAILED, False):
        gc.collect()

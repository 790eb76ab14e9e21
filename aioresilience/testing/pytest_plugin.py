"""pytest plugin: run pytest-asyncio (>= 1.3) tests on a virtual-time loop, under a watchdog.

Enable it with ``-p aioresilience.testing.pytest_plugin`` or
``pytest_plugins = ["aioresilience.testing.pytest_plugin"]`` in a top-level conftest. Every
asyncio test then runs on :class:`~aioresilience.testing.VirtualTimeLoop`; a test marked
``@pytest.mark.real_time`` runs on a normal asyncio loop instead (for tests that wait on threads
or sockets with timeouts). The ``virtual_clock`` fixture returns the running loop, whose
``time()`` and ``advance()`` a test can use.

A deadlocked test fails at once with :class:`~aioresilience.testing.DeadlockError`. Whatever
else hangs (a thread that never answers, a real-time loop, a blocking call) is caught by a
wall-clock watchdog: each of a test's setup, call and teardown gets ``aioresilience_wall_timeout``
seconds (ini option, default 60; 0 turns it off), or what ``@pytest.mark.wall_timeout(seconds)``
says. When they are up, the test fails with the stacks of all threads and the running loop's
tasks, and the run goes on. On POSIX the watchdog is ``SIGALRM`` in the main thread (a test that
uses ``SIGALRM`` itself should say ``wall_timeout(0)``); should the test still not return
``BACKSTOP_SECONDS`` later, or where there is no ``SIGALRM``, ``faulthandler`` dumps the stacks
and ends the process rather than let the run hang (unless pytest's own ``faulthandler_timeout``
is set: faulthandler has room for one pending dump, and that one is left alone).
"""

from __future__ import annotations

import asyncio
import faulthandler
import math
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType

import pytest

try:
    import pytest_asyncio
except ImportError as error:
    raise ImportError(
        "aioresilience.testing.pytest_plugin needs pytest-asyncio: "
        "pip install 'pytest-asyncio>=1.3'"
    ) from error

from ._virtual import VirtualTimeLoop, describe_task

# The loop factories hook came with pytest-asyncio 1.3: an older one fails the run with an
# INTERNALERROR (pluggy's "unknown hook 'pytest_asyncio_loop_factories'") naming no version.
_found = getattr(pytest_asyncio, "__version__", None)
if _found and tuple(int(part) for part in re.findall(r"\d+", _found)[:2]) < (1, 3):
    raise ImportError(
        f"aioresilience.testing.pytest_plugin needs pytest-asyncio >= 1.3, found {_found!r}: "
        "pip install 'pytest-asyncio>=1.3'"
    )

__all__ = [
    "BACKSTOP_SECONDS",
    "pytest_addoption",
    "pytest_asyncio_loop_factories",
    "pytest_configure",
    "pytest_runtest_call",
    "pytest_runtest_setup",
    "pytest_runtest_teardown",
    "pytest_unconfigure",
    "virtual_clock",
]

WALL_TIMEOUT_INI = "aioresilience_wall_timeout"
DEFAULT_WALL_TIMEOUT = 60.0

#: Seconds after the watchdog's failure at which a test that still has not returned ends the
#: process (with a stack dump).
BACKSTOP_SECONDS = 10.0

_stderr_fd = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        WALL_TIMEOUT_INI,
        "Wall-clock seconds each of a test's setup, call and teardown may take before the test "
        "fails with a stack dump (0: no limit; @pytest.mark.wall_timeout overrides)",
        default=str(DEFAULT_WALL_TIMEOUT),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_time: run this asyncio test on a normal loop, not in virtual time"
    )
    config.addinivalue_line(
        "markers",
        f"wall_timeout(seconds): this test's wall-clock limit per phase, instead of "
        f"{WALL_TIMEOUT_INI} (0: no limit)",
    )
    _seconds(config.getini(WALL_TIMEOUT_INI), WALL_TIMEOUT_INI)  # a bad value fails at start
    # The backstop dump goes to the real stderr: output capture swaps fd 2 during tests.
    config.stash[_stderr_fd] = os.dup(2)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _stderr_fd in config.stash:
        os.close(config.stash[_stderr_fd])
        del config.stash[_stderr_fd]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.get_closest_marker("real_time") is not None:
        return {"real_time": asyncio.new_event_loop}
    return {"virtual_time": VirtualTimeLoop}


@pytest_asyncio.fixture
async def virtual_clock(request: pytest.FixtureRequest) -> VirtualTimeLoop:
    """The running :class:`VirtualTimeLoop` (use from an async test)."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualTimeLoop):
        raise RuntimeError("virtual_clock needs the test to run on a VirtualTimeLoop")
    # An async fixture runs on the loop of its own loop scope: a test on a loop of another
    # scope (@pytest.mark.asyncio(loop_scope="module")) would get a loop that is not its own.
    marker = request.node.get_closest_marker("asyncio")
    # (pytest-asyncio still reads the deprecated scope= as loop_scope=.)
    marked = (marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")) if marker else None
    test_scope = marked or _ini_scope(request.config, "asyncio_default_test_loop_scope")
    fixture_scope = _ini_scope(request.config, "asyncio_default_fixture_loop_scope")
    if fixture_scope == "fixture-scope":  # the loop of the fixture's own (function) scope
        fixture_scope = "function"
    if test_scope != fixture_scope:
        raise RuntimeError(
            f"virtual_clock runs on the {fixture_scope!r} loop (asyncio_default_fixture_loop_"
            f"scope) and this test on its {test_scope!r} loop: not the test's loop; in such a "
            "test use asyncio.get_running_loop(), the VirtualTimeLoop running it"
        )
    return loop


def _ini_scope(config: pytest.Config, name: str) -> str:
    try:
        return str(config.getini(name) or "function")
    except ValueError:  # (an ini option this pytest-asyncio does not know)
        return "function"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with _watchdog(item, "setup"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with _watchdog(item, "call"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    with _watchdog(item, "teardown"):
        return (yield)


def _seconds(value: object, where: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not (0 <= seconds < math.inf):
        raise pytest.UsageError(f"{where} must be a number of seconds >= 0, got {value!r}")
    return seconds


def _limit(item: pytest.Item) -> tuple[float, str]:
    marker = item.get_closest_marker("wall_timeout")
    if marker is not None:
        if len(marker.args) != 1 or marker.kwargs:
            raise pytest.UsageError(
                f"{item.nodeid}: wall_timeout takes one argument, the seconds, got "
                f"args={marker.args!r} kwargs={marker.kwargs!r}"
            )
        return _seconds(marker.args[0], f"{item.nodeid}: wall_timeout"), "@pytest.mark.wall_timeout"
    return _seconds(item.config.getini(WALL_TIMEOUT_INI), WALL_TIMEOUT_INI), WALL_TIMEOUT_INI


@contextmanager
def _watchdog(item: pytest.Item, phase: str) -> Iterator[None]:
    seconds, source = _limit(item)
    if seconds == 0:
        yield
        return
    stderr = item.config.stash[_stderr_fd]
    # faulthandler keeps one pending dump per process: with pytest's own faulthandler_timeout
    # set, that one is left alone and serves as the backstop.
    backstop = not _faulthandler_timeout(item.config)
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        # No way to interrupt the test: at least never hang the run.
        if backstop:
            faulthandler.dump_traceback_later(seconds, exit=True, file=stderr)
        try:
            yield
        finally:
            if backstop:
                faulthandler.cancel_dump_traceback_later()
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        pytest.fail(
            f"{phase} of {item.nodeid} exceeded its wall-clock limit of {seconds:g} s "
            f"({source})\n{_stacks()}",
            pytrace=True,
        )

    started = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, expired)
    # An enclosing run (pytester's in-process runs) may have a timer of its own: restore it.
    previous_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    if backstop:
        faulthandler.dump_traceback_later(seconds + BACKSTOP_SECONDS, exit=True, file=stderr)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if backstop:
            faulthandler.cancel_dump_traceback_later()
        # None: a handler not set from Python, which cannot be put back; the default then.
        signal.signal(
            signal.SIGALRM, signal.SIG_DFL if previous_handler is None else previous_handler
        )
        if previous_delay:
            left = previous_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3))


def _faulthandler_timeout(config: pytest.Config) -> float:
    """pytest's own ``faulthandler_timeout``; 0 when unset, or when its faulthandler plugin is
    disabled (``-p no:faulthandler``), which then registers no such option."""
    try:
        value = config.getini("faulthandler_timeout")
    except ValueError:  # (unknown configuration value)
        return 0.0
    return float(value or 0)


def _stacks() -> str:
    """Every thread's stack (faulthandler's dump), then the running loop's tasks."""
    with tempfile.TemporaryFile("w+") as dump:
        faulthandler.dump_traceback(dump, all_threads=True)
        dump.seek(0)
        text = f"Stacks of all threads (most recent call first):\n{dump.read()}"
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return text
    tasks = sorted((t for t in asyncio.all_tasks(loop) if not t.done()), key=lambda t: t.get_name())
    lines = [f"  {describe_task(task)}" for task in tasks] or ["  (none)"]
    return text + "\nTasks of the running loop:\n" + "\n".join(lines)

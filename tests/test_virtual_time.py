"""The virtual-time loop: sleeps jump, order is exact, asyncio's timeouts fire on time, and a
deadlock is reported instead of waited out."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any

import pytest

from aioresilience import ResilienceError
from aioresilience._support import clock as _clock
from aioresilience.testing import DeadlockError, VirtualTimeLoop, run
from aioresilience.testing._virtual import describe_task


async def test_long_sleep_returns_at_once_with_exact_clock() -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    started = time.perf_counter()
    before = loop.time()
    await asyncio.sleep(3600)
    assert loop.time() - before == 3600
    assert time.perf_counter() - started < 0.5


async def test_wake_up_order_is_exact() -> None:
    loop = asyncio.get_running_loop()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        woke.append((name, loop.time()))

    await asyncio.gather(sleeper("c", 3.0), sleeper("a", 1.0), sleeper("b", 2.0))
    assert woke == [("a", 1.0), ("b", 2.0), ("c", 3.0)]


async def test_equal_deadlines_fire_in_the_order_they_were_set() -> None:
    # On a real loop the clock moves between two calls, so these deadlines increase; here they
    # are equal, and asyncio's timer heap alone does not keep equal deadlines in order.
    loop = asyncio.get_running_loop()
    woke: list[tuple[int, float]] = []

    async def sleeper(i: int) -> None:
        await asyncio.sleep(1.0)
        woke.append((i, loop.time()))

    await asyncio.gather(*(sleeper(i) for i in range(50)))
    assert woke == [(i, 1.0) for i in range(50)]
    fired: list[tuple[int, float]] = []
    when = loop.time() + 2.5
    handles = [loop.call_at(when, lambda i=i: fired.append((i, loop.time()))) for i in range(50)]
    handles[0].cancel()  # the clock still stands at the deadline asked for
    handles[7].cancel()
    await asyncio.sleep(3)
    assert fired == [(i, 3.5) for i in range(50) if i not in (0, 7)]
    woke.clear()
    tasks = [asyncio.create_task(sleeper(i)) for i in range(3)]
    await asyncio.sleep(0)
    tasks[0].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert woke == [(1, 5.0), (2, 5.0)]


async def test_asyncio_timeout_fires_in_virtual_time() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(5):
            await asyncio.sleep(10)
    assert loop.time() == 5.0
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.sleep(10), 2)
    assert loop.time() == 7.0


async def test_io_still_works(virtual_clock: VirtualTimeLoop) -> None:
    assert virtual_clock is asyncio.get_running_loop()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with await asyncio.start_server(echo, "127.0.0.1", 0) as server:
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        writer.close()
        await writer.wait_closed()
    virtual_clock.advance(10)
    assert virtual_clock.time() == 10.0


def test_run_helper_and_start_time() -> None:
    async def main() -> float:
        await asyncio.sleep(5)
        return asyncio.get_running_loop().time()

    assert run(main(), start=100.0) == 105.0


async def test_run_from_a_running_loop_is_refused_plainly() -> None:
    coro = asyncio.sleep(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "never awaited" warning of the run's own
            with pytest.raises(RuntimeError, match=r"run\(\) cannot be called from a running"):
                run(coro)
    finally:
        coro.close()


@pytest.mark.wall_timeout(10)  # it hung before the fix
@pytest.mark.parametrize("start", [2e7, 1e9, 1e12])
def test_timers_run_at_clock_values_where_a_nanosecond_is_below_one_float_step(
    start: float,
) -> None:
    """Beyond about 4.5e6 s, asyncio's `when < time() + 1 ns` test never held for a timer due
    exactly now, and the loop spun forever (found fuzzing retry_after at large offsets)."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.1)
        due_now = loop.create_future()
        loop.call_at(loop.time(), due_now.set_result, None)
        await due_now
        return loop.time() - start

    elapsed = run(main(), start=start)
    assert 0.1 <= elapsed < 0.1 + 1e-3  # one float step late at most: 0.6 ms at 1e12


@pytest.mark.wall_timeout(10)  # it hung before the fix
@pytest.mark.parametrize("start", [2168035.1, 1e6, 3e6])
def test_equal_deadlines_all_run_at_clock_values_near_a_million_seconds(start: float) -> None:
    """Ties get the next float after the deadline, and the clock stood at the deadline asked
    for: around 1e6-4.5e6 s the third tie lay more than 1 ns past it and never became due
    (the loop spun; found composing a hedge, a timeout and a rate limiter)."""

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        when = loop.time() + 1
        for i in range(5):
            loop.call_at(when, fired.append, i)
        await asyncio.sleep(2)
        return fired

    assert run(main(), start=start) == [0, 1, 2, 3, 4]


def test_advance_rejects_negative() -> None:
    loop = VirtualTimeLoop()
    try:
        with pytest.raises(ValueError, match="seconds must be >= 0, got -1"):
            loop.advance(-1)
    finally:
        loop.close()


@pytest.mark.wall_timeout(10)  # start=inf, or advance(inf), spun forever before the fix
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("inf"), ValueError),
        (float("nan"), ValueError),
        (10**400, ValueError),
        (True, TypeError),
        ("5", TypeError),
        (None, TypeError),
    ],
    ids=["inf", "nan", "huge-int", "bool", "str", "None"],
)
def test_start_and_advance_refuse_what_is_not_a_finite_number(
    value: object, error: type[Exception]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing half-built left for asyncio's __del__
        with pytest.raises(error, match="start must be"):
            VirtualTimeLoop(value)  # type: ignore[arg-type]
    loop = VirtualTimeLoop()
    try:
        with pytest.raises(error, match="seconds must be"):
            loop.advance(value)  # type: ignore[arg-type]
        assert loop.time() == 0.0
    finally:
        loop.close()


@pytest.mark.real_time
async def test_real_time_marker_uses_a_normal_loop() -> None:
    assert not isinstance(asyncio.get_running_loop(), VirtualTimeLoop)


def test_a_virtual_loop_registers_nothing_and_the_default_clock_reads_its_time() -> None:
    """Issue 12: no module-global clock switch; the default clock is the running loop's."""
    assert not hasattr(_clock, "register_loop_clock") and not hasattr(_clock, "now")
    clock = _clock.LoopClock()
    for start in (50.0, 7.0):  # a second loop: the clock finds the new one, not the closed one
        loop = VirtualTimeLoop(start=start)
        try:

            async def read() -> tuple[float, float]:
                first = clock.time()
                await asyncio.sleep(2.5)
                return first, clock.time()

            assert loop.run_until_complete(read()) == (start, start + 2.5)
        finally:
            loop.close()
    before = time.monotonic()
    assert before <= clock.time() <= time.monotonic()  # outside a loop: the monotonic clock


# A deadlock is reported, never waited out; real waits on threads, I/O and signals still work.


def _raises_deadlock_fast(main: Coroutine[Any, Any, object]) -> DeadlockError:
    started = time.perf_counter()
    with pytest.raises(DeadlockError) as caught:
        run(main)
    assert time.perf_counter() - started < 2.0
    return caught.value


async def _wait_for(future: asyncio.Future[None]) -> None:
    await future


def test_a_deadlock_raises_naming_each_waiting_task_and_where_it_waits() -> None:
    async def main() -> None:
        nobody_sets = asyncio.get_running_loop().create_future()
        helper = asyncio.create_task(_wait_for(nobody_sets), name="helper")
        await asyncio.sleep(1.5)  # virtual time passes first: the clock is in the message
        await asyncio.Event().wait()
        await helper

    error = _raises_deadlock_fast(main())
    message = str(error)
    assert "deadlock at virtual time 1.5" in message
    assert "2 task(s) wait forever" in message
    assert len(error.tasks) == 2 and "helper" in {task.get_name() for task in error.tasks}
    lines = message.splitlines()
    helper_line = next(line for line in lines if line.strip().startswith("helper:"))
    assert "_wait_for (" in helper_line and helper_line.endswith(": await future")
    main_line = next(line for line in lines if "main (" in line)
    assert "-> Event.wait (" in main_line
    assert isinstance(error, RuntimeError) and isinstance(error, ResilienceError)


async def _waits_in_a_generator(event: asyncio.Event) -> AsyncIterator[None]:
    yield
    await event.wait()
    yield


@contextlib.asynccontextmanager
async def _waits_on_entry(event: asyncio.Event) -> AsyncIterator[None]:
    await event.wait()
    yield


class _AwaitsACoroutine:
    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    def __await__(self) -> Generator[Any, None, bool]:
        return self._event.wait().__await__()


def test_a_deadlock_names_the_await_inside_async_generators_and_awaitables() -> None:
    # An await inside an async generator (async for, @asynccontextmanager) or behind an
    # __await__ returning a coroutine's was hidden: the chain ended at `async for` or at
    # contextlib's `return await anext(self.gen)`, never reaching the await that waits.
    async def iterates(event: asyncio.Event) -> None:
        async for _ in _waits_in_a_generator(event):
            pass

    async def enters(event: asyncio.Event) -> None:
        async with _waits_on_entry(event):
            pass

    async def awaits(event: asyncio.Event) -> None:
        await _AwaitsACoroutine(event)

    async def main() -> None:
        event = asyncio.Event()
        waiters = {"iterates": iterates, "enters": enters, "awaits": awaits}
        tasks = [asyncio.create_task(wait(event), name=name) for name, wait in waiters.items()]
        await asyncio.gather(*tasks)

    lines = str(_raises_deadlock_fast(main())).splitlines()

    def line_of(name: str) -> str:
        return next(line for line in lines if line.strip().startswith(f"{name}:"))

    assert "-> _waits_in_a_generator (" in line_of("iterates")
    assert "-> _waits_on_entry (" in line_of("enters")
    for name in ("iterates", "enters", "awaits"):
        assert "-> Event.wait (" in line_of(name), line_of(name)
        assert line_of(name).endswith(": await fut"), line_of(name)


@pytest.mark.wall_timeout(10)  # the clock jumped a day a turn for ever before the fix
def test_a_timer_at_infinity_is_never_due_and_a_wait_on_it_alone_is_a_deadlock() -> None:
    async def sleeps() -> None:
        await asyncio.sleep(math.inf)

    async def times_out() -> None:
        async with asyncio.timeout(math.inf):
            await asyncio.Event().wait()

    assert "sleeps (" in str(_raises_deadlock_fast(sleeps()))
    assert "deadlock at virtual time 0:" in str(_raises_deadlock_fast(times_out()))

    async def cancelled() -> float:
        loop = asyncio.get_running_loop()
        handle = loop.call_at(math.inf, lambda: None)
        assert handle.when() == math.inf
        handle.cancel()
        async with asyncio.timeout(math.inf):
            await asyncio.sleep(2)
        return loop.time()

    assert run(cancelled()) == 2.0


def test_a_task_that_never_started_is_named_as_such() -> None:
    loop = VirtualTimeLoop()
    try:
        task = loop.create_task(asyncio.sleep(1), name="idle")
        assert describe_task(task) == f"idle: sleep ({asyncio.sleep.__code__.co_filename}:" + (
            f"{asyncio.sleep.__code__.co_firstlineno}): never started"
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            loop.run_until_complete(task)
    finally:
        loop.close()


def test_running_a_loop_with_nothing_to_do_is_a_deadlock() -> None:
    loop = VirtualTimeLoop()
    try:
        with pytest.raises(DeadlockError, match="No task is waiting"):
            loop.run_forever()
    finally:
        loop.close()


def test_a_thread_that_calls_back_is_waited_for_in_real_time() -> None:
    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def answer_later() -> None:
            time.sleep(0.1)
            loop.call_soon_threadsafe(future.set_result, 7)

        threading.Thread(target=answer_later).start()
        return await future, loop.time()

    assert run(main()) == (7, 0.0)  # virtual time stood still while the thread worked


def test_executor_calls_are_waited_for_and_idle_workers_do_not_hide_a_deadlock() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert await asyncio.to_thread(lambda: (time.sleep(0.05), 1)[1]) == 1
        assert await loop.run_in_executor(None, time.sleep, 0.05) is None
        with concurrent.futures.ThreadPoolExecutor(1) as own:
            assert await loop.run_in_executor(own, pow, 2, 5) == 32
        # The default pool's threads are alive but idle: they can call nobody back.
        await asyncio.Event().wait()

    _raises_deadlock_fast(main())


def test_a_thread_that_ends_without_calling_back_leaves_a_deadlock_reported() -> None:
    async def main() -> None:
        threading.Thread(target=time.sleep, args=(0.2,)).start()
        await asyncio.Event().wait()

    _raises_deadlock_fast(main())


async def test_anyio_worker_threads_are_waited_for() -> None:
    import anyio.to_thread

    assert await anyio.to_thread.run_sync(lambda: (time.sleep(0.05), "done")[1]) == "done"


def test_io_from_outside_is_waited_for() -> None:
    # Another process writes later: only the descriptor the loop watches can wake it.
    ours, theirs = socket.socketpair()
    with ours, subprocess.Popen(["sh", "-c", "sleep 0.1; echo late"], stdout=theirs) as writer:
        theirs.close()

        async def main() -> bytes:
            reader, transport = await asyncio.open_connection(sock=ours)
            line = await reader.readline()
            transport.close()
            return line

        assert run(main()) == b"late\n"
    assert writer.returncode == 0


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs POSIX signals")
def test_a_signal_handler_is_a_wake_source() -> None:
    # Another process sends the signal once the handler is in place: no thread and no
    # descriptor of the loop's is involved.
    script = f"read go; sleep 0.1; kill -USR1 {os.getpid()}"
    with subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE) as sender:
        assert sender.stdin is not None
        go = sender.stdin

        async def main() -> str:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[str] = loop.create_future()
            loop.add_signal_handler(signal.SIGUSR1, future.set_result, "signalled")
            go.write(b"go\n")
            go.close()
            return await future

        try:
            assert run(main()) == "signalled"
        finally:
            # If the loop gave up early, the signal is still on its way: let it land harmlessly.
            previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            sender.wait()
            signal.signal(signal.SIGUSR1, previous)


def test_closing_waits_for_executor_threads_in_real_time() -> None:
    # On 3.12+ asyncio.Runner gives the executor 300 s to join: a virtual timer, it used to
    # expire at once and warn "did not finishing joining" (3.11 has no such timeout).
    async def main() -> None:
        # Left running: the thread still sleeps when the runner closes.
        asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.2)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(main())


def test_after_shutdown_the_default_executor_refuses_work_as_asyncio_does() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.shutdown_default_executor()
        with pytest.raises(RuntimeError, match="shutdown"):
            await loop.run_in_executor(None, int)

    run(main())


# The pytest plugin: a deadlock fails its test at once; any other hang fails it on the watchdog.

_PLUGIN_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
addopts = -p aioresilience.testing.pytest_plugin -p no:cacheprovider
{extra}
"""

_HANGING_TESTS = """
import asyncio
import time

import pytest


async def test_deadlocked() -> None:
    await asyncio.get_running_loop().create_future()


def test_blocked_in_a_call() -> None:
    time.sleep(30)


@pytest.mark.real_time
async def test_hung_on_a_normal_loop() -> None:
    await asyncio.Event().wait()


@pytest.mark.wall_timeout(5)
def test_the_marker_overrides_the_ini_option() -> None:
    time.sleep(0.4)


async def test_the_run_goes_on() -> None:
    await asyncio.sleep(3600)
"""


def test_the_plugin_fails_deadlocked_and_hung_tests_and_the_run_goes_on(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(_PLUGIN_INI.format(extra="aioresilience_wall_timeout = 0.2"))
    pytester.makepyfile(test_hangs=_HANGING_TESTS)
    started = time.perf_counter()
    result = pytester.runpytest()
    assert time.perf_counter() - started < 25  # each hang cost its 0.2 s, not 30 s or forever
    result.assert_outcomes(passed=2, failed=3)
    out = result.stdout.str()
    assert "DeadlockError: VirtualTimeLoop deadlock at virtual time 0" in out
    assert "test_deadlocked (" in out  # the waiting task is named, with its location
    for name in ("test_blocked_in_a_call", "test_hung_on_a_normal_loop"):
        assert f"call of test_hangs.py::{name} exceeded its wall-clock limit of 0.2 s" in out
    assert "(aioresilience_wall_timeout)" in out
    assert (
        "Stacks of all threads" in out
        and 'test_hangs.py", line 12 in test_blocked_in_a_call' in out
    )
    assert "Tasks of the running loop:" in out and "test_hung_on_a_normal_loop (" in out


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ("aioresilience_wall_timeout = soon", "aioresilience_wall_timeout must be a number"),
        ("aioresilience_wall_timeout = -1", "got '-1'"),
        ("aioresilience_wall_timeout = inf", "got 'inf'"),
    ],
)
def test_a_bad_wall_timeout_is_a_usage_error(
    pytester: pytest.Pytester, setting: str, error: str
) -> None:
    pytester.makeini(_PLUGIN_INI.format(extra=setting))
    pytester.makepyfile(test_one="def test_one() -> None:\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert error in result.stderr.str()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="the watchdog's timer is SIGALRM")
def test_an_in_process_run_gives_back_the_enclosing_watchdog(pytester: pytest.Pytester) -> None:
    # This test runs under the plugin's own watchdog: a nested run must leave it armed.
    ours = signal.getsignal(signal.SIGALRM)
    before, _ = signal.getitimer(signal.ITIMER_REAL)
    assert before > 0
    pytester.makeini(_PLUGIN_INI.format(extra="aioresilience_wall_timeout = 5"))
    pytester.makepyfile(test_one="def test_one() -> None:\n    pass\n")
    pytester.runpytest().assert_outcomes(passed=1)
    after, _ = signal.getitimer(signal.ITIMER_REAL)
    assert 0 < after <= before
    assert signal.getsignal(signal.SIGALRM) is ours


def test_the_watchdog_runs_with_pytests_faulthandler_plugin_disabled(
    pytester: pytest.Pytester,
) -> None:
    # With -p no:faulthandler its ini option faulthandler_timeout is not registered: reading
    # it raised ValueError, and every test of the run errored in its setup.
    pytester.makeini(_PLUGIN_INI.format(extra="aioresilience_wall_timeout = 0.2"))
    pytester.makepyfile(
        test_two="""
import time


def test_passes() -> None:
    pass


def test_hangs() -> None:
    time.sleep(30)
"""
    )
    result = pytester.runpytest("-p", "no:faulthandler")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*call of test_two.py::test_hangs exceeded its wall-clock*"])


def test_a_test_that_swallows_the_watchdog_ends_the_run_with_a_dump(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(_PLUGIN_INI.format(extra="aioresilience_wall_timeout = 0.2"))
    pytester.makeconftest(
        "import aioresilience.testing.pytest_plugin as plugin\nplugin.BACKSTOP_SECONDS = 0.3\n"
    )
    pytester.makepyfile(
        test_stubborn="""
import time


def test_swallows_everything() -> None:
    while True:
        try:
            time.sleep(30)
        except BaseException:
            pass
"""
    )
    started = time.perf_counter()
    result = pytester.runpytest_subprocess()
    assert time.perf_counter() - started < 20
    assert result.ret == 1  # faulthandler's exit, not a hang
    err = result.stderr.str()
    assert "Timeout (0:00:00.5" in err and "in test_swallows_everything" in err


def test_the_loop_adds_two_attributes_to_asyncios_own() -> None:
    # CPython keeps an instance's attributes in the compact shared-key form (specialised
    # lookups for asyncio's own `self.time()`, `self._ready`... on every turn) only up to 30
    # of them; asyncio's selector loop sets 24. The subclass keeps its state in two.
    virtual = VirtualTimeLoop()
    plain = asyncio.SelectorEventLoop()
    try:
        added = set(vars(virtual)) - set(vars(plain))
        assert added == {"_virtual_now", "_vt"}
        assert len(vars(virtual)) <= 30
    finally:
        virtual.close()
        plain.close()


def test_virtual_clock_on_a_test_of_another_loop_scope_says_so(pytester: pytest.Pytester) -> None:
    """The fixture runs on its own loop scope's loop: a module-scoped test got a loop that was
    not running it (time() stayed 0, advance() moved another loop), with no error."""
    pytester.makeini(_PLUGIN_INI.format(extra=""))
    pytester.makepyfile(
        test_scopes="""
import asyncio
import pytest

async def test_function_scope(virtual_clock):
    assert virtual_clock is asyncio.get_running_loop()

@pytest.mark.asyncio(loop_scope="module")
async def test_module_scope(virtual_clock):
    pass
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*virtual_clock runs on the 'function' loop*'module' loop*"])


def test_virtual_clock_under_fixture_scope_and_the_deprecated_scope_keyword(
    pytester: pytest.Pytester,
) -> None:
    """asyncio_default_fixture_loop_scope = fixture-scope runs virtual_clock on the function
    loop, the test's own: it was refused as on a 'fixture-scope' loop. A marker's deprecated
    scope= still picks the test's loop: it was read as the default, with no error."""
    pytester.makeini(_PLUGIN_INI.replace("= function", "= fixture-scope").format(extra=""))
    pytester.makepyfile(
        test_scopes="""
import asyncio
import pytest

async def test_function_scope(virtual_clock):
    assert virtual_clock is asyncio.get_running_loop()

@pytest.mark.asyncio(scope="module")
async def test_module_scope(virtual_clock):
    pass
"""
    )
    result = pytester.runpytest("-W", "ignore::DeprecationWarning")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*virtual_clock runs on the 'function' loop*'module' loop*"])


def test_a_closed_loop_refuses_a_timer_at_inf_as_any_other() -> None:
    loop = VirtualTimeLoop()
    loop.close()
    for when in (5.0, math.inf):
        with pytest.raises(RuntimeError, match="closed"):
            loop.call_at(when, print)


@pytest.mark.parametrize(
    ("stub", "message"),
    [
        (
            "types.SimpleNamespace(__version__='1.2.0')",
            "aioresilience.testing.pytest_plugin needs pytest-asyncio >= 1.3, found '1.2.0': "
            "pip install 'pytest-asyncio>=1.3'",
        ),
        (
            "None",
            "aioresilience.testing.pytest_plugin needs pytest-asyncio: "
            "pip install 'pytest-asyncio>=1.3'",
        ),
    ],
)
def test_the_plugin_names_the_pytest_asyncio_it_needs(stub: str, message: str) -> None:
    """Under pytest-asyncio 1.2 the run ended in an INTERNALERROR, pluggy's "unknown hook
    'pytest_asyncio_loop_factories'", naming no version; without it, a bare ModuleNotFoundError."""
    code = (
        "import sys, types\n"
        f"sys.modules['pytest_asyncio'] = {stub}\n"
        "try:\n"
        "    import aioresilience.testing.pytest_plugin\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        timeout=60,
        check=True,
    )
    assert run.stdout == message + "\n"


def test_describing_an_await_whose_referents_lead_back_up_ends() -> None:
    # The walk follows a wrapper's referents (gc.get_referents) to the coroutine it runs: an
    # iterator that also refers to the waiting task's own coroutine led the walk back up to
    # it, and round again, for ever.
    class Back:
        def __init__(self) -> None:
            self.outer: object = None

        def __iter__(self) -> Back:
            return self

        def __next__(self) -> None:
            return None  # a bare yield: the task is woken next turn, for ever

    class Awaitable:
        def __init__(self, it: Back) -> None:
            self.it = it

        def __await__(self) -> Back:
            return self.it

    back = Back()

    async def waits() -> None:
        await Awaitable(back)  # type: ignore[misc]

    async def main() -> str:
        task = asyncio.create_task(waits(), name="loops")
        back.outer = task.get_coro()
        await asyncio.sleep(0)
        text = describe_task(task)
        task.cancel()
        return text

    text = run(main())
    assert text.startswith("loops: ") and ".waits (" in text and "await Awaitable" in text

"""timeout(): fires, does not fire, outer cancellation vs own expiry, nesting, shielding."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
import weakref
from typing import Any

import pytest

from aioresilience import ResilienceError, TimeoutExceeded, timeout, timeout_at
from aioresilience import _timeout as timeout_module


async def test_fires_at_the_deadline_and_cancels_the_work() -> None:
    loop = asyncio.get_running_loop()
    cancelled = []

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(loop.time())
            raise

    limit = timeout(2)

    async def guarded() -> None:
        async with limit as bound:
            assert bound is limit  # as with asyncio.timeout
            await work()

    with pytest.raises(TimeoutExceeded) as caught:
        await guarded()
    assert cancelled == [2.0]
    assert loop.time() == 2.0
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value, ResilienceError)
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    assert caught.value.seconds == 2
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_does_not_fire_when_the_work_finishes_in_time() -> None:
    guard = timeout(2)
    async with guard:
        await asyncio.sleep(1.999)
    assert not guard.expired()
    await asyncio.sleep(5)  # the lane's timer firing later must not touch this task
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_outer_cancellation_passes_through_unchanged() -> None:
    started = asyncio.Event()

    async def guarded() -> None:
        async with timeout(10):
            started.set()
            await asyncio.sleep(100)

    task = asyncio.create_task(guarded())
    await started.wait()
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_outer_cancel_at_the_same_moment_as_expiry_stays_a_cancellation() -> None:
    async def guarded() -> None:
        async with timeout(1):
            await asyncio.sleep(100)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(1)  # the deadline's timer and our cancel land in the same turn
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_timeouts_report_the_one_that_expired() -> None:
    loop = asyncio.get_running_loop()

    async def nested(outer: timeout, inner: timeout) -> None:
        async with outer, inner:
            await asyncio.sleep(10)

    outer, inner = timeout(5), timeout(1)
    with pytest.raises(TimeoutExceeded) as caught:
        await nested(outer, inner)
    assert caught.value.seconds == 1 and inner.expired() and not outer.expired()
    assert loop.time() == 1.0

    outer, inner = timeout(1), timeout(5)
    with pytest.raises(TimeoutExceeded) as caught:
        await nested(outer, inner)
    assert caught.value.seconds == 1 and outer.expired() and not inner.expired()
    assert loop.time() == 2.0


async def test_inner_timeout_caught_inside_outer_does_not_leak_cancellation() -> None:
    async with timeout(10):
        with pytest.raises(TimeoutExceeded):
            async with timeout(1):
                await asyncio.sleep(5)
        await asyncio.sleep(1)  # still running normally under the outer timeout
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_cancelled_while_the_inner_work_is_shielded() -> None:
    loop = asyncio.get_running_loop()
    finished = []

    async def critical() -> str:
        await asyncio.sleep(3)
        finished.append(loop.time())
        return "saved"

    inner = asyncio.ensure_future(critical())
    with pytest.raises(TimeoutExceeded):
        async with timeout(1):
            await asyncio.shield(inner)
    assert loop.time() == 1.0
    assert await inner == "saved"  # the shielded work went on
    assert finished == [3.0]


async def test_body_that_swallows_the_cancellation_is_not_a_timeout() -> None:
    guard = timeout(1)
    async with guard:
        with contextlib.suppress(asyncio.CancelledError):  # the body swallows it
            await asyncio.sleep(5)
    assert guard.expired()
    # The pending cancel request was taken back by uncancel(); the task runs on.
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_many_concurrent_calls_share_one_timer_and_expire_in_order() -> None:
    loop = asyncio.get_running_loop()
    outcomes: list[tuple[int, str, float]] = []

    async def call(i: int) -> None:
        try:
            async with timeout(2):
                await asyncio.sleep(0.5 if i % 2 else 5)
            outcomes.append((i, "done", loop.time()))
        except TimeoutExceeded:
            outcomes.append((i, "timeout", loop.time()))

    tasks = []
    for i in range(100):
        tasks.append(asyncio.create_task(call(i)))
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    for i, outcome, at in outcomes:
        assert outcome == ("done" if i % 2 else "timeout")
        expected = i * 0.01 + (0.5 if i % 2 else 2.0)
        assert at == pytest.approx(expected, abs=1e-9)
    lane = timeout_module._lane(loop, 2.0)
    assert lane.finished == 0 and not lane.entries


async def test_lane_memory_stays_bounded_when_calls_finish_out_of_order() -> None:
    loop = asyncio.get_running_loop()
    blocker = asyncio.create_task(_sleep_under(60, 59))  # the oldest entry stays
    await asyncio.sleep(0)
    release = asyncio.Event()

    async def held() -> None:
        async with timeout(60):
            await release.wait()

    middle = [asyncio.create_task(held()) for _ in range(1000)]
    await asyncio.sleep(0)
    newest = asyncio.create_task(_sleep_under(60, 30))  # and so does the newest
    await asyncio.sleep(0)
    lane = timeout_module._lane(loop, 60.0)
    assert len(lane.entries) == 1002
    release.set()
    await asyncio.gather(*middle)  # all finish between the two: none can leave from an end
    live = [e for e in lane.entries if e._lane is lane]
    assert len(live) == 2
    assert len(lane.entries) <= 2 * len(live) + 64
    await newest
    await blocker
    assert not lane.entries and lane.finished == 0


async def _sleep_under(limit: float, seconds: float) -> None:
    async with timeout(limit):
        await asyncio.sleep(seconds)


async def test_decorator_keeps_the_signature_and_times_out() -> None:
    @timeout(1)
    async def fetch(x: int) -> int:
        await asyncio.sleep(x)
        return x

    assert fetch.__name__ == "fetch"
    assert await fetch(0) == 0
    with pytest.raises(TimeoutExceeded):
        await fetch(2)
    with pytest.raises(TypeError, match="coroutine functions"):
        timeout(1)(lambda: None)  # type: ignore[arg-type,return-value]


async def test_none_and_inf_mean_no_limit_and_zero_expires_at_once() -> None:
    for no_limit in (None, float("inf")):
        async with timeout(no_limit) as limit:
            await asyncio.sleep(10_000)
        assert limit.seconds is None and limit.when() is None and not limit.expired()
    with pytest.raises(TimeoutExceeded):
        await _sleep_under(0, 1)


async def test_reuse_and_bad_input() -> None:
    guard = timeout(1)
    async with guard:
        pass
    with pytest.raises(RuntimeError, match="has already been entered"):
        await guard.__aenter__()
    with pytest.raises(TypeError, match="seconds must be a number or None"):
        timeout("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seconds must be a number or None, got True"):
        timeout(True)
    with pytest.raises(ValueError, match="seconds must be a number or None, got nan"):
        timeout(float("nan"))
    with pytest.raises(ValueError, match="seconds must be within float range, got 1000"):
        timeout(10**400)
    with pytest.raises(ValueError, match="when must be a number or None, got nan"):
        timeout_at(float("nan"))
    with pytest.raises(TypeError, match="when must be a number or None"):
        timeout_at("1")  # type: ignore[arg-type]


def test_lanes_do_not_keep_closed_loops_alive() -> None:
    loop = asyncio.new_event_loop()

    async def use() -> None:
        async with timeout(1):
            pass

    loop.run_until_complete(use())
    assert loop in timeout_module._lanes
    loop.close()
    timeout_module._last = (None, {})
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None


def test_loops_in_two_threads_each_cancel_their_own_task() -> None:
    """The task lookup remembers the last loop; another thread's loop must not confuse it."""
    outcomes: dict[str, list[str]] = {}

    async def expire_many(name: str) -> None:
        results = outcomes.setdefault(name, [])
        for _ in range(100):
            try:
                async with timeout(0):
                    await asyncio.sleep(0.0005)
                results.append("finished")
            except TimeoutExceeded:
                results.append("timeout")

    threads = [
        threading.Thread(target=asyncio.run, args=(expire_many(name),)) for name in ("a", "b")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {"a": ["timeout"] * 100, "b": ["timeout"] * 100}


# -- a drop-in for asyncio.timeout (issue 11, item 11) ---------------------------------------------


async def _sleeps_zero_under(limit: timeout) -> str:
    async with limit:
        await asyncio.sleep(0)
    return "went on"


@pytest.mark.parametrize("seconds", [0, 0.0, -1, -1e9, float("-inf")])
async def test_a_deadline_at_or_before_entry_fires_at_the_first_suspension(seconds: float) -> None:
    """As asyncio.timeout: the block does not get past its first await, even ``sleep(0)``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    limit = timeout(seconds)
    with pytest.raises(TimeoutExceeded) as caught:
        await _sleeps_zero_under(limit)
    assert limit.expired() and loop.time() == start
    assert caught.value.seconds == 0  # nothing of the (empty) budget was left
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_spent_budget_expires_at_once() -> None:
    """``timeout(deadline - loop.time())`` once the deadline has passed: expired, no error."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1
    await asyncio.sleep(2)
    with pytest.raises(TimeoutExceeded):
        async with timeout(deadline - loop.time()) as limit:
            await asyncio.sleep(0)
    assert limit.when() == deadline


async def test_a_block_that_never_suspends_is_not_cut_by_an_expired_deadline() -> None:
    async with timeout(-1) as limit:
        pass
    assert not limit.expired()
    await asyncio.sleep(1)  # the deadline's timer was cancelled with the block
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_as_binds_the_timeout_and_when_is_the_deadline_in_loop_time() -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(3)
    limit = timeout(2)
    assert limit.when() is None  # a duration has no deadline before entry
    async with limit as bound:
        assert bound is limit
        assert limit.when() == loop.time() + 2 == 5.0
        assert limit.remaining() == 2
    assert limit.when() == 5.0 and not limit.expired()


async def test_timeout_at_fires_at_its_deadline() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutExceeded) as caught:
        async with timeout_at(loop.time() + 1.5) as limit:
            await asyncio.sleep(10)
    assert loop.time() == 1.5 and limit.expired() and limit.when() == 1.5
    assert caught.value.seconds == 1.5
    async with timeout_at(None) as unlimited:
        await asyncio.sleep(100)
    assert unlimited.when() is None and not unlimited.expired()
    with pytest.raises(TimeoutExceeded):  # a deadline already past: at the first await
        await _sleeps_zero_under(timeout_at(loop.time() - 5))


async def test_rescheduling_later_takes_the_entry_out_of_its_lane() -> None:
    """Two entries of one lane: the first moves its deadline later. The lane still fires for
    the second at 2 s, and the first expires at its new deadline, not at its old one."""
    loop = asyncio.get_running_loop()
    ends: dict[str, tuple[str, float]] = {}
    limits: dict[str, timeout] = {}

    async def call(name: str) -> None:
        try:
            async with timeout(2) as limits[name]:
                await asyncio.sleep(10)
        except TimeoutExceeded as error:
            ends[name] = (f"timeout after {error.seconds:g}s", loop.time())

    first = asyncio.create_task(call("first"))
    await asyncio.sleep(0.5)
    second = asyncio.create_task(call("second"))
    await asyncio.sleep(0)
    limits["first"].reschedule(loop.time() + 4)  # 0.5 + 4
    lane = timeout_module._lane(loop, 2)
    assert [entry for entry in lane.entries if entry._lane is lane] == [limits["second"]]
    assert limits["first"].when() == 4.5
    await asyncio.gather(first, second)
    assert ends == {"second": ("timeout after 2s", 2.5), "first": ("timeout after 4.5s", 4.5)}
    assert not lane.entries and lane.finished == 0


async def test_rescheduling_an_entry_in_the_middle_of_its_lane() -> None:
    loop = asyncio.get_running_loop()
    ends: dict[int, float] = {}
    limits: dict[int, timeout] = {}

    async def call(i: int) -> None:
        with contextlib.suppress(TimeoutExceeded):
            async with timeout(10) as limits[i]:
                await asyncio.sleep(100)
        ends[i] = loop.time()

    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(call(i)))
        await asyncio.sleep(1)
    limits[1].reschedule(loop.time() + 1)  # earlier than the others: at 4
    limits[2].reschedule(None)  # never
    await asyncio.sleep(20)
    assert ends == {1: 4.0, 0: 10.0}
    assert not limits[2].expired()
    tasks[2].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert tasks[2].cancelled()  # an outside cancellation, not a timeout
    lane = timeout_module._lane(loop, 10)
    assert not lane.entries and lane.finished == 0


async def test_rescheduling_to_the_past_or_back_and_forth() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutExceeded):
        async with timeout(5) as limit:
            limit.reschedule(loop.time() - 1)
            await asyncio.sleep(0)  # cut here, as asyncio's would be
    assert loop.time() == 0
    with pytest.raises(TimeoutExceeded):
        async with timeout_at(loop.time() + 1) as limit:
            limit.reschedule(None)
            limit.reschedule(loop.time() + 3)
            limit.reschedule(loop.time() + 2)  # the timer of +3 is gone
            await asyncio.sleep(10)
    assert loop.time() == 2
    async with timeout(1) as limit:
        limit.reschedule(limit.when())  # the same deadline: stays in its lane
        lane = timeout_module._lane(loop, 1)
        assert limit._lane is lane and lane.entries[-1] is limit


async def test_reschedule_only_while_the_block_runs() -> None:
    with pytest.raises(RuntimeError, match="has not been entered"):
        timeout(1).reschedule(5)
    async with timeout(1) as limit:
        with pytest.raises(ValueError, match="when must be a number or None, got nan"):
            limit.reschedule(float("nan"))
    with pytest.raises(RuntimeError, match="that is finished"):
        limit.reschedule(5)
    async with timeout(1) as limit:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.sleep(2)
        with pytest.raises(RuntimeError, match="that is expiring"):
            limit.reschedule(5)
    with pytest.raises(RuntimeError, match="that is expired"):
        limit.reschedule(5)


async def test_an_outside_cancellation_passes_a_rescheduled_timeout() -> None:
    async def guarded() -> None:
        async with timeout(10) as limit:
            limit.reschedule(asyncio.get_running_loop().time() + 1)
            await asyncio.sleep(100)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(1)  # the moved deadline and our cancel land in the same turn
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_entering_outside_a_task_is_refused_when_awaited() -> None:
    """``__aenter__`` is a coroutine, as asyncio's: it looks for its task when it runs, here
    in a plain loop callback (no task) although it was created inside this task."""
    limit = timeout(1)
    entering = limit.__aenter__()
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            entering.send(None)
        except BaseException as error:
            errors.append(error)

    asyncio.get_running_loop().call_soon(drive)
    await asyncio.sleep(0)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "inside a task" in str(errors[0])
    with pytest.raises(RuntimeError, match="has not been entered"):
        limit.reschedule(1)


async def _error_while_unwinding(make: Any) -> BaseException:
    """The error a ``finally`` raises after ``make(0.01)`` cancelled the block."""
    try:
        async with make(0.01):
            try:
                await asyncio.sleep(1)
            finally:
                raise KeyError("cleanup failed")
    except KeyError as error:
        return error
    raise AssertionError("the KeyError did not come out")


async def test_an_error_raised_while_our_cancellation_unwinds_has_the_running_pythons_context() -> (
    None
):
    """3.13's asyncio puts the TimeoutError between the error and the CancelledError in its
    context chain; 3.11 and 3.12 leave the CancelledError. We do what the running one does,
    with TimeoutExceeded as the TimeoutError."""
    ours = await _error_while_unwinding(timeout)
    theirs = await _error_while_unwinding(asyncio.timeout)
    if sys.version_info >= (3, 13):
        assert isinstance(ours.__context__, TimeoutExceeded)
        assert isinstance(ours.__context__.__cause__, asyncio.CancelledError)
        assert ours.__context__.__context__ is ours.__context__.__cause__
        assert ours.__context__.seconds == 0.01
    else:
        assert isinstance(ours.__context__, asyncio.CancelledError)
    assert type(theirs.__context__) in (TimeoutError, asyncio.CancelledError)
    assert isinstance(ours.__context__, type(theirs.__context__))
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancelled_error_subclass_is_our_expiry_from_3_13_as_in_asyncio() -> None:
    class Stop(asyncio.CancelledError):
        pass

    async def body(make: Any) -> str:
        try:
            async with make(0.01):
                try:
                    await asyncio.sleep(1)
                except asyncio.CancelledError:
                    raise Stop() from None
        except TimeoutError:
            return "timeout"
        except Stop:
            return "stop"
        return "nothing"

    assert await body(timeout) == await body(asyncio.timeout)
    assert await body(timeout) == ("timeout" if sys.version_info >= (3, 13) else "stop")


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager task start is new in 3.12")
@pytest.mark.parametrize("pure_python_parent", [False, True])
def test_a_timeout_in_an_eagerly_started_pure_python_task_binds_as_asyncio_does(
    pure_python_parent: bool,
) -> None:
    """nest_asyncio installs asyncio's pure-Python tasks. A parent eagerly starts a
    pure-Python child that enters a timeout: the timeout binds to ``asyncio.current_task()``,
    as asyncio's own does. Up to 3.13 that is the child. 3.14's ``current_task()`` keeps the
    running task per thread and does not see pure-Python tasks, so there asyncio's timeout
    and ours both bind to the C task beneath: a C parent is cancelled at the child's deadline
    (and with a pure-Python parent too, the C task running the test). That is asyncio's
    behaviour, followed; seeing the pure-Python task would take asyncio's private table."""
    py_task: Any = asyncio.tasks._PyTask  # type: ignore[attr-defined]

    def eager_py(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> Any:
        return py_task(coro, loop=loop, eager_start=True, **kw)

    def run(make: Any) -> dict[str, str]:
        seen: dict[str, str] = {}

        async def child() -> None:
            try:
                async with make(0.05):
                    await asyncio.sleep(0.2)
                seen["child"] = "finished"
            except TimeoutError:
                seen["child"] = "timed out"

        async def parent() -> None:
            loop = asyncio.get_running_loop()
            loop.set_task_factory(eager_py)
            child_task = asyncio.create_task(child())
            loop.set_task_factory(None)
            try:
                await asyncio.sleep(0.3)
                seen["parent"] = "finished"
            except asyncio.CancelledError:
                seen["parent"] = "cancelled"
            await child_task

        async def main() -> None:
            if pure_python_parent:
                asyncio.get_running_loop().set_task_factory(eager_py)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.create_task(parent())

        from aioresilience.testing import VirtualTimeLoop

        loop = VirtualTimeLoop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
        return seen

    ours, theirs = run(timeout), run(asyncio.timeout)
    assert ours == theirs
    if sys.version_info < (3, 14):
        assert ours == {"child": "timed out", "parent": "finished"}
    elif not pure_python_parent:
        assert ours == {"parent": "cancelled", "child": "finished"}


def test_the_timeout_and_clock_use_no_private_asyncio_or_cpython_attribute() -> None:
    """Documented APIs only (issue 12): no private attribute of an imported module (asyncio,
    sys, ...), no ``getattr(x, "_name")``, no private import, and none of the private names
    that task-lookup shortcuts reach for, in the timeout and the clock."""
    import ast
    import inspect

    from aioresilience._support import clock as _clock

    shortcuts = {
        "_current_tasks",
        "_thread_id",
        "_get_running_loop",
        "_set_running_loop",
        "_enter_task",
        "_leave_task",
        "_swap_current_task",
        "_PyTask",
        "_getframe",
        "get_asyncgen_hooks",
    }
    for module in (timeout_module, _clock):
        tree = ast.parse(inspect.getsource(module))
        modules = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        for node in ast.walk(tree):
            where = f"{module.__name__}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in shortcuts, where
                if isinstance(node.value, ast.Name) and node.value.id in modules:
                    assert not node.attr.startswith("_"), where
            called = getattr(node.func, "id", "") if isinstance(node, ast.Call) else ""
            if isinstance(node, ast.Call) and called in ("getattr", "hasattr"):
                assert not any(
                    isinstance(arg, ast.Constant) and str(arg.value).startswith("_")
                    for arg in node.args
                ), where
            if isinstance(node, ast.ImportFrom) and not node.level:
                assert not any(alias.name.startswith("_") for alias in node.names), where

"""The public hub: complete, sorted, and free of optional imports; `_core` free of asyncio."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aioresilience
import aioresilience as ar
import aioresilience.testing

PACKAGE = Path(aioresilience.__file__).parent


def isort_style(name: str) -> tuple[int, str]:
    """The order ruff keeps ``__all__`` in: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_complete() -> None:
    assert aioresilience.__all__ == sorted(aioresilience.__all__, key=isort_style)
    public = {
        name
        for name, value in vars(aioresilience).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("aioresilience")
    }
    assert public == set(aioresilience.__all__)
    for name in aioresilience.__all__:
        assert hasattr(aioresilience, name)


def test_abc_all_is_sorted_and_names_the_seams() -> None:
    """aioresilience.abc: the public seams, each name defined there, the running and time seams
    included, and the same objects as the top-level names where both exist."""
    import aioresilience.abc as seams

    assert seams.__all__ == sorted(seams.__all__, key=isort_style)
    for name in seams.__all__:
        assert hasattr(seams, name), name
    assert {"Strategy", "GuardStrategy", "GuardForms", "NO_RESULT", "Call", "Core"} <= set(
        seams.__all__
    )
    assert {"Clock", "Timer", "LOOP_CLOCK", "BreakerState", "LimiterState"} <= set(seams.__all__)
    assert seams.Strategy is ar.Strategy
    assert seams.CircuitState is ar.CircuitState and seams.Decision is ar.Decision
    assert isinstance(seams.LOOP_CLOCK, seams.Clock)


def test_testing_all_is_sorted() -> None:
    assert aioresilience.testing.__all__ == sorted(aioresilience.testing.__all__, key=isort_style)


def test_import_pulls_in_no_optional_dependency() -> None:
    code = (
        "import sys, aioresilience\n"
        "optional = {'redis', 'starlette', 'fastapi', 'aiohttp', 'httpx', 'opentelemetry',\n"
        "            'prometheus_client', 'uvloop', 'anyio', 'pytest', 'hypothesis'}\n"
        "print(sorted(optional & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level
            names.add(prefix + (node.module or ""))
    return names


def test_core_is_pure() -> None:
    """`_core` imports no asyncio, no I/O, and nothing outside itself from the package."""
    core_files = sorted((PACKAGE / "_core").glob("*.py"))
    assert len(core_files) >= 7
    allowed_stdlib = {
        "__future__",
        "copy",  # shallow copies of immutable policy objects (with_policy_name)
        "fractions",  # GCRA's interval as an exact fraction of ns, at construction
        "math",
        "collections",
        "itertools",
        "dataclasses",
        "typing",
        "enum",
    }
    for path in core_files:
        for name in imported_modules(path):
            if name.startswith("."):
                assert not name.startswith(".."), f"{path.name} imports {name} outside _core"
            else:
                assert name.split(".")[0] in allowed_stdlib, f"{path.name} imports {name}"


def test_py_typed_is_shipped() -> None:
    assert (PACKAGE / "py.typed").exists()


async def test_every_decorator_keeps_the_wrapped_functions_metadata() -> None:
    """Issue 11 item 19: decorating must not lose `__defaults__`/`__kwdefaults__` (code that
    reads a function's defaults, dependency injection or CLI builders, must see the same)."""

    async def fetch(a: int, b: int = 2, *, c: int = 3) -> int:
        """Docs."""
        return a + b + c

    shedder = ar.LoadShedder(lambda: 0.0)
    decorators: list[Any] = [
        ar.TokenBucket(10, 10),
        ar.GCRA(10, 1).limit(key=lambda *args, **kwargs: "k"),
        ar.CircuitBreaker(),
        ar.Bulkhead(2),
        ar.timeout(5),
        ar.Retry(),
        ar.Fallback(0),
        ar.AdaptiveThrottle(),
        ar.ChaosMonkey(failure_rate=0),
        shedder.limit(ar.Priority.CRITICAL),
        ar.Pipeline.builder("p").build(),
    ]
    for decorator in decorators:
        decorated = decorator(fetch)
        assert decorated.__defaults__ == (2,), decorator
        assert decorated.__kwdefaults__ == {"c": 3}, decorator
        assert (decorated.__name__, decorated.__doc__) == ("fetch", "Docs."), decorator
        assert await decorated(1) == 6, decorator


async def test_a_class_with_an_async_call_is_refused_its_instances_accepted() -> None:
    """Calling such a class makes an instance (sync): decorating the class is refused up
    front, where it was accepted and failed (a breaker failure) on every call."""

    class Handler:
        async def __call__(self) -> int:
            return 1

    decorators: list[Any] = [
        ar.TokenBucket(10, 10),
        ar.CircuitBreaker(),
        ar.Retry(),
        ar.Pipeline.builder("p").build(),
    ]
    for decorator in decorators:
        with pytest.raises(TypeError, match="decorates coroutine functions"):
            decorator(Handler)
        assert await decorator(Handler())() == 1, decorator


async def test_call_refuses_what_cannot_be_called_before_running_it() -> None:
    """A coroutine object (``call(fn())`` for ``call(fn)``) or None was retried, counted as
    a breaker failure, or replaced by the fallback's value (and the coroutine never ran)."""

    async def fetch() -> int:
        return 1

    breaker = ar.CircuitBreaker()
    runners: list[Any] = [
        ar.Retry(attempts=3, backoff=ar.constant(0)),
        ar.Fallback(0),
        breaker,
        ar.Bulkhead(2),
        ar.Pipeline.builder("p").fallback(0).retry(attempts=2).build(),
    ]
    for runner in runners:
        run = getattr(runner, "call", None) or runner.execute
        for bad in (fetch(), None):
            with pytest.raises(TypeError, match="runs a callable"):
                await run(bad)
            if hasattr(bad, "close"):
                bad.close()
        assert await run(fetch) == 1
    assert breaker.statistics().failures == 0


def test_every_event_class_is_exported() -> None:
    """Issue 12: each kind of occurrence is a public class (isinstance is how telemetry and
    callbacks tell them apart)."""
    exported = {name for name in aioresilience.__all__}
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith("aioresilience."):
            continue
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, ar.ResilienceEvent)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                assert name in exported, f"{module.__name__}.{name} is not exported"

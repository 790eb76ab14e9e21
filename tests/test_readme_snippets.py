"""The README's code that users copy runs and does what it says.

The web-handler snippet is executed as written, with a stand-in for FastAPI's `app.post` and
`HTTPException` (the framework itself is not a dependency of the core package).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import aioresilience as ar

README = (Path(__file__).parent.parent / "README.md").read_text()


def python_block_containing(marker: str) -> str:
    for block in re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL):
        if marker in block:
            return str(block)
    raise AssertionError(f"no python block in README.md contains {marker!r}")


class HTTPException(Exception):
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.headers = headers or {}


class App:
    def __init__(self) -> None:
        self.routes: dict[str, Callable[..., Any]] = {}

    def post(self, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.routes[path] = handler
            return handler

        return register


def handler_for(pipeline: ar.Pipeline, charge: Callable[..., Any]) -> Callable[..., Any]:
    app = App()
    namespace: dict[str, Any] = {
        "ar": ar,
        "math": math,
        "app": app,
        "HTTPException": HTTPException,
        "payments": pipeline,
        "psp": type("PSP", (), {"charge": staticmethod(charge)}),
    }
    exec(python_block_containing("registry = ar.PipelineRegistry()"), namespace)
    return app.routes["/orders/{order_id}/pay"]


async def ok(order_id: str) -> str:
    return f"paid {order_id}"


async def test_a_success_passes_through() -> None:
    pay = handler_for(ar.Pipeline.builder("payments").build(), ok)
    assert await pay("o1") == "paid o1"


async def test_an_isolated_breaker_answers_503_without_retry_after() -> None:
    breaker = ar.CircuitBreaker(name="psp")
    breaker.isolate()  # retry_after is inf: no header, and no crash on ceil(inf)
    pay = handler_for(ar.Pipeline.builder("payments").circuit_breaker(breaker).build(), ok)
    with pytest.raises(HTTPException) as refused:
        await pay("o1")
    assert refused.value.status_code == 503
    assert refused.value.headers == {}


async def test_a_rate_limit_answers_429_with_retry_after_in_whole_seconds() -> None:
    limiter = ar.GCRA(1, 2.5, max_wait=0)  # refuse at once, as an edge should
    limiter.try_acquire()
    pay = handler_for(ar.Pipeline.builder("payments").rate_limit(limiter).build(), ok)
    with pytest.raises(HTTPException) as refused:
        await pay("o1")
    assert refused.value.status_code == 429
    assert refused.value.headers == {"Retry-After": "3"}  # 2.5 s rounded up


async def test_the_custom_strategies_run_as_described() -> None:
    """README "Compose": a custom guard counts every attempt and its failures, a custom
    re-running strategy runs the call again after an OSError."""
    namespace: dict[str, Any] = {"ar": ar}
    exec(python_block_containing("class CountCalls(Strategy):"), namespace)
    results = iter([OSError("reset"), "ok"])

    async def call() -> str:
        outcome = next(results)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    counter, flaky = namespace["counter"], namespace["flaky"]
    assert await flaky.execute(call) == "ok"
    assert (counter.calls, counter.failures) == (2, 1)
    assert [s["kind"] for s in flaky.describe()] == ["again_on_oserror", "count_calls"]
    with pytest.raises(ValueError, match="not an OSError"):
        await flaky.execute(lambda: _raise(ValueError("not an OSError")))
    assert (counter.calls, counter.failures) == (3, 2)  # not re-run


async def _raise(error: Exception) -> None:
    raise error


def test_the_readmes_scenario_file_runs_as_written(tmp_path: Path) -> None:
    """The simulator section's TOML sketch is a valid scenario: it loads, both variants run,
    and during its outage the budgeted variant sends fewer calls than naive retry."""
    from aioresilience.sim import load_scenario, run_scenario

    (block,) = re.findall(r"```toml\n(.*?)```", README, flags=re.DOTALL)
    path = tmp_path / "checkout.toml"
    path.write_text(block)
    scenario = load_scenario(path)
    # The outage (2m-3m) and a minute after it, at a quarter of the rate: the same question,
    # a quarter of the requests.
    scenario = scenario.replace(duration=240.0, arrivals=scenario.arrivals.with_rate(50.0))
    result = run_scenario(scenario)
    naive, budgeted = (result.variant(name) for name in ("naive retry", "budget + breaker"))
    assert budgeted["summary"]["dependency_calls"] < naive["summary"]["dependency_calls"]

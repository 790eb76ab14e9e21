"""The examples run (in virtual time) and show what they claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_reports_every_algorithm() -> None:
    out = run_example("demo.py")
    for name in (
        "TokenBucket",
        "LeakyBucket shaper",
        "GCRA",
        "FixedWindowCounter",
        "SlidingWindowLog",
    ):
        assert name in out
    assert "Per-key: 12 immediate requests from 3 clients at 2 each -> 6 admitted" in out


def test_resilient_call_absorbs_the_failures() -> None:
    out = run_example("resilient_call.py")
    assert "breaker closed -> open" in out and "result: 200 OK" in out


def test_bulkhead_partitions_isolate_the_slow_service() -> None:
    out = run_example("bulkhead_services.py")
    assert "inventory     served=20 refused= 0" in out
    assert "payment       served= 0" in out


def test_producer_consumer_accounts_for_every_event() -> None:
    out = run_example("producer_consumer.py")
    for policy in ("block", "reject", "drop_newest", "drop_oldest"):
        line = next(line for line in out.splitlines() if line.startswith(policy))
        assert "(sum 500)" in line


def test_product_page_degrades() -> None:
    out = run_example("product_page.py")
    assert "basic page" in out and "shed under load" in out and "'Kettle (cached)'" in out


def test_resilient_service_absorbs_injected_faults() -> None:
    out = run_example("resilient_service.py")
    assert "100 requests, 100 succeeded" in out
    faults = int(next(line for line in out.splitlines() if "chaos_fault" in line).split()[-1])
    retries = int(next(line for line in out.splitlines() if "retry_scheduled" in line).split()[-1])
    assert faults > 0 and retries >= faults


def test_many_processes_share_one_limit_and_survive_an_outage(redis_server: object) -> None:
    out = run_example("many_processes.py")  # starts its own redis-server
    assert "4 processes asked 160 at once of a shared limit of 50: admitted 50" in out
    assert "20 asked, 12 admitted by the local fallback" in out
    assert "Redis back: decided by Redis again" in out


def test_fastapi_app_limits_sheds_and_maps_the_downstream_timeout() -> None:
    out = run_example("fastapi_app.py")
    assert "per-ip: 25 requests at once -> 20 ok, 5 refused (429)" in out
    assert "per-key: key a x4, key b x1 -> [200, 200, 200, 429, 200]" in out
    assert "shedding: 4 concurrent reports -> [200, 200, 200, 503]" in out
    assert "downstream: a hanging call -> 504 Gateway Timeout" in out
    assert "health: 50 probes -> {200} (exempt)" in out


def test_demo_scenario_lasts_its_seconds() -> None:
    # --real-time promises 3 s per algorithm: no client sleeps past the end (the last of 50
    # exponential sleeps drawn before the end used to add some 4 s to each run).
    import importlib.util

    from aioresilience import TokenBucket
    from aioresilience.testing import VirtualTimeLoop

    spec = importlib.util.spec_from_file_location("demo_example", EXAMPLES / "demo.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    loop = VirtualTimeLoop()
    try:
        began = loop.time()
        loop.run_until_complete(
            demo.scenario(TokenBucket(20, 20.0), clients=50, seconds=3.0, seed=7)
        )
        elapsed = loop.time() - began
    finally:
        loop.close()
    assert 3.0 - 1.0 < elapsed <= 3.0 + 0.5 + 1e-6  # the last admission waits 0.5 s at most

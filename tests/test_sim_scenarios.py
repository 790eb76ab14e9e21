"""Each built-in scenario's measured answer, asserted; the result's contract; determinism.

Each built-in runs once per test session (a module fixture), seeded as shipped; the tests
read the figures of that one run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aioresilience.sim import (
    SimulationResult,
    builtin_names,
    load_scenario,
    run_scenario,
    simulate,
)
from aioresilience.sim._answers import recovery_time, window
from aioresilience.sim._engine import interval_count

pytestmark = pytest.mark.starts_first  # some 11 s of simulation

BUILTINS = ("latency-spike", "outage", "overload", "quota", "thundering-herd")

_results: dict[str, SimulationResult] = {}


def result_of(name: str) -> SimulationResult:
    if name not in _results:
        _results[name] = run_scenario(load_scenario(name))
    return _results[name]


def summary(name: str, variant: str) -> dict[str, Any]:
    return result_of(name).variant(variant)["summary"]  # type: ignore[no-any-return]


def test_the_builtins_are_the_five_of_the_issue() -> None:
    assert tuple(builtin_names()) == BUILTINS
    for name in BUILTINS:
        scenario = load_scenario(name)
        assert scenario.source == f"builtin:{name}"
        assert scenario.question.endswith("?")


def test_outage_budget_and_breaker_spare_the_dead_dependency() -> None:
    """The issue's example: during the outage the budgeted pipeline sends at most a third of
    the naive variant's calls to the dead dependency (here far less), and after it the
    naive retries keep the recovering dependency down while the other recovers."""
    result = result_of("outage")
    naive, guarded = result.variant("naive retry"), result.variant("budget + breaker")
    outage = load_scenario("outage").dependency.outages[0]
    naive_calls = window(naive, "outage 1")["dependency_calls"]
    guarded_calls = window(guarded, "outage 1")["dependency_calls"]
    assert guarded_calls <= naive_calls / 3
    assert guarded_calls <= naive_calls / 100  # the breaker opens within seconds
    # Naive: about five calls per request during the outage (five attempts each).
    assert naive_calls >= 4.5 * window(naive, "outage 1")["offered"]
    assert recovery_time(guarded, outage.end) is not None
    assert recovery_time(guarded, outage.end) <= 30
    assert recovery_time(naive, outage.end) is None  # the retry storm never lets it recover
    assert guarded["summary"]["breaker_open_s"] >= outage.end - outage.start - 10
    assert summary("outage", "budget + breaker")["refusals"]["CircuitOpen"] > 0
    assert result.data["findings"]["outage_call_share"] <= 1 / 3
    assert "'budget + breaker' sent" in result.answer and "had not recovered" in result.answer


def test_latency_spike_timeouts_and_hedging_cut_the_tail() -> None:
    result = result_of("latency-spike")
    p99 = {
        name: window(result.variant(name), "spike 1")["latency_s"]["p99"]
        for name in ("no timeout", "timeout + retry", "hedged")
    }
    assert p99["no timeout"] >= 2.0  # the slow 5 % are in the tail
    assert p99["timeout + retry"] <= 0.5  # cut at 250 ms and retried
    assert p99["hedged"] <= 0.3  # a second attempt after 150 ms
    assert p99["hedged"] < p99["timeout + retry"]
    for name in p99:
        assert window(result.variant(name), "spike 1")["success_pct"] >= 99.9
        # Neither doubles the load: only the slow calls are tried again.
        assert summary("latency-spike", name)["amplification"] <= 1.1
    assert result.data["findings"]["best"] == "hedged"


def test_overload_a_bulkhead_keeps_goodput_where_no_limit_collapses() -> None:
    result = result_of("overload")
    goodput = result.data["findings"]["overload_goodput_per_s"]
    # Capacity is about 100 calls/s: unlimited, the queue and the knee make every call slower
    # than its timeout and goodput collapses; the bulkhead serves near capacity.
    assert goodput["no limit"] < 5
    assert goodput["bulkhead"] >= 85
    assert goodput["adaptive limit"] >= 10 * goodput["no limit"]
    assert result.data["findings"]["best"] == "bulkhead"
    burst = window(result.variant("bulkhead"), "burst 1")
    assert burst["latency_s"]["p99"] < 0.5
    # The tail in the burst: unlimited, the few calls served are the ones that just made their
    # 1 s timeout; the adaptive limit keeps it shorter, the fixed bulkhead shortest.
    p99 = result.data["findings"]["overload_p99_s"]
    assert p99["no limit"] > 0.9
    assert p99["bulkhead"] < p99["adaptive limit"] < 0.75 * p99["no limit"]
    assert summary("overload", "bulkhead")["refusals"]["BulkheadFull"] > 0
    assert summary("overload", "no limit")["failures"]["TimeoutExceeded"] > 0


def test_quota_a_client_limiter_avoids_the_429s() -> None:
    result = result_of("quota")
    quota = result.data["findings"]["quota"]
    retrying, limited = quota["retry on 429"], quota["client limiter"]
    assert retrying["429s"] > 10_000
    assert limited["429s"] <= retrying["429s"] / 1000
    # The quota (50/s) bounds what both serve; the limiter spends a fifth of the calls.
    assert 45 <= limited["goodput_per_s"] <= 50.5
    assert 45 <= retrying["goodput_per_s"] <= 50.5  # calls served after the run do not count
    assert limited["amplification"] <= retrying["amplification"] / 4
    assert limited["p99_s"] < retrying["p99_s"] / 4
    # The retries waited for Retry-After: each 429 was retried after the window renewed.
    assert summary("quota", "retry on 429")["latency_s"]["p99"] >= 1.0


def test_thundering_herd_jitter_spreads_the_retries() -> None:
    result = result_of("thundering-herd")
    findings = result.data["findings"]
    served = findings["held_calls_served_pct"]
    assert served["full jitter"] >= 99
    assert served["no jitter"] <= 30  # synchronised waves: most exhaust their attempts
    refusing = findings["refusing_for_s"]
    assert refusing["full jitter"] <= refusing["no jitter"] / 3
    assert (
        findings["refused_after_restart"]["full jitter"]
        < (findings["refused_after_restart"]["no jitter"])
    )


# -- the result's contract (shared with the report and the live view) -----------------------

SUMMARY_KEYS = {
    "requests",
    "succeeded",
    "failed",
    "refused",
    "success_pct",
    "goodput_per_s",
    "latency_s",
    "dependency_calls",
    "amplification",
    "refusals",
    "failures",
    "breaker_open_s",
}
SERIES_KEYS = {
    "t",
    "offered",
    "succeeded",
    "failed",
    "refused",
    "throughput_per_s",
    "p50_s",
    "p95_s",
    "p99_s",
    "dependency_calls",
    "dependency_in_flight_max",
    "dependency_healthy",
    "breaker_open_fraction",
    "limiter_admitted",
}


@pytest.mark.parametrize("name", BUILTINS)
def test_result_keeps_the_contract(name: str) -> None:
    data = json.loads(result_of(name).to_json())
    assert data["version"] == 1
    assert {"name", "question", "seed", "duration_s", "interval_s", "source"} <= set(
        data["scenario"]
    )
    assert {"arrivals", "dependency"} <= set(data["scenario"])
    assert data["answer"].endswith(".")
    scenario = load_scenario(name)
    intervals = interval_count(scenario.duration, scenario.interval)
    for variant in data["variants"]:
        assert {"name", "description", "pipeline", "summary", "series"} <= set(variant)
        s = variant["summary"]
        assert set(s) >= SUMMARY_KEYS
        assert set(s["latency_s"]) == {"p50", "p95", "p99", "mean"}
        # Every request ends one way or another.
        ended = s["succeeded"] + s["failed"] + s["refused"] + s["substituted"]
        assert ended + s["unfinished"] == s["requests"]
        assert set(variant["series"]) >= SERIES_KEYS
        assert all(len(v) == intervals for v in variant["series"].values())
        assert sum(variant["series"]["offered"]) == s["requests"]
        series = variant["series"]
        for t, healthy in zip(series["t"], series["dependency_healthy"], strict=True):
            assert healthy == int(scenario.dependency.healthy_between(t, t + scenario.interval))
        assert all(0 <= f <= 1 for f in series["breaker_open_fraction"])
        # An interval with no success has no percentiles.
        for ok, p50 in zip(series["succeeded"], series["p50_s"], strict=True):
            assert (p50 is None) == (ok == 0)


def test_breaker_open_time_adds_up_over_the_intervals() -> None:
    variant = result_of("outage").variant("budget + breaker")
    interval = load_scenario("outage").interval
    open_s = sum(variant["series"]["breaker_open_fraction"]) * interval
    assert open_s == pytest.approx(variant["summary"]["breaker_open_s"], rel=1e-4)
    assert variant["summary"]["breaker_open_s"] > 0


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    scenario = load_scenario(Path(__file__).parent / "sim" / "everything.toml")
    first = run_scenario(scenario).to_json()
    assert run_scenario(scenario).to_json() == first
    assert run_scenario(scenario.replace(seed=2)).to_json() != first


def test_adding_a_variant_shifts_no_other_variants_draws() -> None:
    """Each variant's random streams are derived from the seed and its own name."""
    scenario = load_scenario("latency-spike").replace(duration=70.0)
    alone = run_scenario(scenario.replace(variants=scenario.variants[1:2]))
    together = run_scenario(scenario)
    assert alone.variant("timeout + retry") == together.variant("timeout + retry")


def test_interval_rows_reach_the_live_view_in_order() -> None:
    scenario = load_scenario("quota").replace(duration=20.0)
    rows: list[dict[str, Any]] = []
    done: list[str] = []
    result = run_scenario(
        scenario, on_interval=rows.append, on_variant=lambda name, s: done.append(name)
    )
    assert done == ["retry on 429", "client limiter"]
    assert [r["index"] for r in rows] == list(range(20)) * 2
    assert rows[19]["progress"] == 1.0 and rows[0]["progress"] == 0.05
    first = result.variant("retry on 429")["series"]
    assert [r["offered"] for r in rows[:20]] == first["offered"]
    assert set(rows[0]) == {"variant", "index", "progress", *first}


def test_a_duration_that_is_not_a_whole_number_of_intervals() -> None:
    """The last interval is shorter; every arrival is still counted in one."""
    variant = run_scenario(load_scenario("quota").replace(duration=20.5)).variant("retry on 429")
    series, summary = variant["series"], variant["summary"]
    assert len(series["t"]) == 21 and series["t"][-1] == 20.0
    assert sum(series["offered"]) == summary["requests"] > 1500


@pytest.mark.parametrize(("name", "duration"), [("quota", 30.0), ("latency-spike", 61.0)])
def test_an_answer_for_a_run_without_requests(name: str, duration: float) -> None:
    """No request at all (a low rate, a short run): the calls per request are n/a in the
    answer, not a TypeError."""
    result = simulate(name, seed=0, rate="1/h", duration=duration)
    assert all(v["summary"]["requests"] == 0 for v in result.data["variants"])
    assert "n/a dependency calls per request" in result.answer or (
        "n/a calls per request" in result.answer
    )


def test_outage_answer_when_neither_variant_recovered() -> None:
    """A run that ends soon after the outage: each variant's clause reads on its own."""
    answer = simulate("outage", duration=155.0).answer
    assert "'budget + breaker' had not recovered by the end and 'naive retry' had not" in answer
    assert "served calls again had not" not in answer

"""The modelled dependency and arrivals, driven directly (no event loop), and the engine's
end of a run: what is still in flight is cancelled, and counted as unfinished, not failed."""

from __future__ import annotations

import math
import random
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioresilience.sim import load_scenario, run_scenario
from aioresilience.sim._models import (
    ArrivalSpec,
    Burst,
    Dependency,
    DependencyError,
    DependencyOverloaded,
    DependencySpec,
    DependencyUnavailable,
    Diurnal,
    LatencySpec,
    Outage,
    PoissonArrivals,
    QuotaExceeded,
    QuotaSpec,
    Spike,
    exponential,
    lognormal,
)


def dependency(**options: object) -> Dependency:
    spec = DependencySpec(**{"latency": LatencySpec("constant", 0.1), **options})  # type: ignore[arg-type]
    return Dependency(spec, random.Random(1))


def test_fifo_servers_queue_in_arrival_order() -> None:
    d = dependency(servers=2)
    answers = [d.call(0.0) for _ in range(5)]
    assert [round(end, 9) for end, _, _ in answers] == [0.1, 0.1, 0.2, 0.2, 0.3]
    assert [round(wait, 9) for _, wait, _ in answers] == [0.0, 0.0, 0.1, 0.1, 0.2]
    assert d.in_flight(0.15) == 3
    assert d.in_flight(0.31) == 0


def test_outage_modes() -> None:
    d = dependency(
        outages=(
            Outage(10, 20, "error"),
            Outage(30, 40, "hang", hang=5.0),
            Outage(50, 60, "reset"),
        )
    )
    end, _, error = d.call(12.0)
    assert isinstance(error, DependencyUnavailable) and end == pytest.approx(12.001)
    end, _, error = d.call(31.0)
    assert isinstance(error, DependencyUnavailable) and end == 36.0
    # A restart fails every call it held at the same moment.
    assert {d.call(t)[0] for t in (50.0, 55.5, 59.9)} == {60.0}
    assert d.call(60.0)[2] is None


def test_quota_answers_429_with_the_time_left_in_its_window() -> None:
    d = dependency(servers=100, quota=QuotaSpec(3, 1.0))
    errors = [d.call(5.25)[2] for _ in range(4)]
    assert errors[:3] == [None, None, None]
    assert isinstance(errors[3], QuotaExceeded)
    assert errors[3].retry_after == pytest.approx(0.75)
    assert d.call(6.0)[2] is None  # a new window


def test_a_full_queue_refuses_at_once() -> None:
    d = dependency(servers=1, max_queue=2)
    errors = [d.call(0.0)[2] for _ in range(4)]
    assert errors[:3] == [None, None, None]
    assert isinstance(errors[3], DependencyOverloaded)


def test_the_knee_slows_service_when_busy() -> None:
    d = dependency(servers=2, knee=0.5, slowdown=2.0)
    first, _, _ = d.call(0.0)  # utilisation 0 at arrival
    second, _, _ = d.call(0.0)  # 1 in system: 0.5, at the knee
    third, _, _ = d.call(0.0)  # 2 in system: 1.0, 0.5 past it: x 2
    assert first == pytest.approx(0.1) and second == pytest.approx(0.1)
    assert third - 0.1 == pytest.approx(0.2)


def test_slow_recovery_and_spikes() -> None:
    d = dependency(
        servers=100,
        outages=(Outage(0, 10),),
        recovery=10.0,
        cold_factor=3.0,
        spikes=(Spike(100, 110, factor=2.0, extra=0.5),),
    )
    assert d.call(10.0)[0] - 10.0 == pytest.approx(0.3)  # 3x right after
    assert d.call(15.0)[0] - 15.0 == pytest.approx(0.2)  # halfway back
    assert d.call(25.0)[0] - 25.0 == pytest.approx(0.1)
    assert d.call(105.0)[0] - 105.0 == pytest.approx(0.7)


def test_a_spike_hits_its_share_of_calls() -> None:
    d = Dependency(
        DependencySpec(
            servers=10_000,
            latency=LatencySpec("constant", 0.1),
            spikes=(Spike(0, 100, extra=1.0, share=0.2),),
        ),
        random.Random(3),
    )
    slow = sum(d.call(i * 0.01)[0] - i * 0.01 > 0.5 for i in range(5000))
    assert slow / 5000 == pytest.approx(0.2, abs=0.02)


def test_error_rate() -> None:
    d = dependency(servers=10_000, error_rate=0.1)
    failed = sum(isinstance(d.call(0.0)[2], DependencyError) for _ in range(10_000))
    assert failed == pytest.approx(1000, abs=100)


def test_lognormal_latency_has_the_mean_asked() -> None:
    rng = random.Random(5)
    spec = LatencySpec("lognormal", mean=0.05, sigma=0.8)
    assert statistics.fmean(spec.draw(rng) for _ in range(50_000)) == pytest.approx(0.05, rel=0.03)


def test_thinning_follows_bursts_and_the_diurnal_curve() -> None:
    spec = ArrivalSpec(
        rate=100.0,
        bursts=(Burst(10, 20, 3.0),),
        diurnal=Diurnal(amplitude=0.5, period=40.0),
    )
    times = PoissonArrivals(spec, random.Random(2))
    counts = [0] * 40
    while (t := times.next()) < 40:
        counts[int(t)] += 1
    expected = [
        100 * (1 + 0.5 * math.sin(2 * math.pi * (s + 0.5) / 40)) * (3 if 10 <= s < 20 else 1)
        for s in range(40)
    ]
    # Over windows of 10 s (Poisson noise ~ 3 %), within 10 %.
    for w in range(4):
        got = sum(counts[w * 10 : w * 10 + 10])
        want = sum(expected[w * 10 : w * 10 + 10])
        assert got == pytest.approx(want, rel=0.1)


HANGING = """
name = "hanging"
question = "What happens to calls still running at the end?"
duration = "20s"
drain = "5s"

[arrivals]
rate = "10/s"

[dependency]
servers = 100
latency = { distribution = "constant", mean = "100ms" }
outages = [{ start = "15s", end = "1h", mode = "hang", hang = "1h" }]

[[variants]]
name = "bulkhead, no timeout"

[[variants.pipeline]]
strategy = "bulkhead"
max_concurrent = 1000
"""


def test_calls_in_flight_at_the_end_are_cancelled_not_failed(tmp_path: Path) -> None:
    """Cancellation is never a failure: the requests the hung dependency still holds when the
    drain time is up are cancelled (their bulkhead slots returned on the way out) and
    counted as unfinished, in no failure or refusal kind."""
    path = tmp_path / "hanging.toml"
    path.write_text(HANGING)
    s = run_scenario(load_scenario(path)).data["variants"][0]["summary"]
    assert s["unfinished"] == s["requests"] - s["succeeded"] > 0
    assert s["failed"] == s["refused"] == 0
    assert s["failures"] == {} and s["refusals"] == {}
    assert s["dependency_answers"]["DependencyUnavailable"] == s["unfinished"]


@given(
    seed=st.integers(0, 2**64),
    rate=st.floats(1e-3, 1e6),
    mu=st.floats(-10, 10),
    sigma=st.floats(0, 3),
)
def test_the_inline_draws_are_the_random_modules(
    seed: int, rate: float, mu: float, sigma: float
) -> None:
    # The simulator draws latencies and arrivals with its own one-frame copies of
    # expovariate and lognormvariate: the same floats from the same stream, so a scenario's
    # results are what the random module would give.
    ours, theirs = random.Random(seed), random.Random(seed)
    for _ in range(20):
        assert exponential(ours.random, rate) == theirs.expovariate(rate)
        assert lognormal(ours.random, mu, sigma) == theirs.lognormvariate(mu, sigma)
    assert ours.random() == theirs.random()  # as many draws taken from the stream

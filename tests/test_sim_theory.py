"""The simulator checked against theory, like a paper's table.

1. Erlang C. The dependency model with c servers, exponential service times and Poisson
   arrivals is an M/M/c queue, whose probability of waiting and mean wait are known exactly
   (A. K. Erlang, "Solution of some problems in the theory of probabilities of significance
   in automatic telephone exchanges", 1917; in the form of Kleinrock, "Queueing Systems",
   vol. 1, 1975, eq. 3.40 and 3.42):

       A = lam/mu = crho,   C(c, A) = (A^c/c! · 1/(1-rho)) / (Σ_{k<c} A^k/k! + A^c/c! · 1/(1-rho)),
       Wq = C(c, A) / (cmu - lam).

   The model is driven directly (no event loop, no pipeline: the queue is what is checked),
   seeded. The run length is justified by batch means (Law and Kelton, "Simulation Modeling
   and Analysis", §9.5.3): the run is cut into batches, the batch averages are treated as
   independent, and their spread gives the estimate's standard error; the test asserts that
   error is at most half the tolerance, so the tolerance is two standard errors wide. Control
   variates (Lavenberg and Welch, "A perspective on the use of control variables to increase
   the efficiency of Monte Carlo simulations", Management Science 27(3), 1981) remove the
   part of each batch's error explained by its sampled mean service and interarrival times,
   whose true means are known; that halves the error at high load, and so quarters the run.
2. A token bucket in a simulated pipeline admits exactly capacity + ⌊rate·t⌋ calls by time
   t, when demand never lets it rest.
3. The latency histogram's quantiles are within its stated relative error of the exact ones.
"""

from __future__ import annotations

import math
import random
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioresilience.sim import load_scenario, run_scenario
from aioresilience.sim._metrics import LatencyHistogram
from aioresilience.sim._models import Dependency, DependencySpec, LatencySpec


def erlang_c(servers: int, load: float) -> float:
    """C(c, A): the probability that an arriving call waits, for offered load A = c·rho."""
    a = servers * load
    tail = a**servers / math.factorial(servers) / (1.0 - load)
    return tail / (sum(a**k / math.factorial(k) for k in range(servers)) + tail)


def controlled_mean(ys: list[float], controls: list[list[float]]) -> tuple[float, float]:
    """The control-variate estimate of E[y] and its standard error: the intercept of the
    least-squares fit of the batch means ``ys`` on the centred controls (their true means are
    0), with the residuals' spread for the error."""
    n, k = len(ys), len(controls)
    rows = [[1.0, *(c[i] for c in controls)] for i in range(n)]
    # The normal equations (X'X) b = X'y, solved by Gauss-Jordan elimination.
    m = [
        [sum(r[i] * r[j] for r in rows) for j in range(k + 1)]
        + [sum(r[i] * y for r, y in zip(rows, ys, strict=True))]
        for i in range(k + 1)
    ]
    inverse = [[float(i == j) for j in range(k + 1)] for i in range(k + 1)]
    for i in range(k + 1):
        pivot = m[i][i]
        m[i] = [v / pivot for v in m[i]]
        inverse[i] = [v / pivot for v in inverse[i]]
        for j in range(k + 1):
            if j != i:
                f = m[j][i]
                m[j] = [a - f * b for a, b in zip(m[j], m[i], strict=True)]
                inverse[j] = [a - f * b for a, b in zip(inverse[j], inverse[i], strict=True)]
    beta = [row[-1] for row in m]
    residuals = [
        y - sum(b * x for b, x in zip(beta, r, strict=True)) for y, r in zip(ys, rows, strict=True)
    ]
    variance = sum(e * e for e in residuals) / (n - k - 1)
    return beta[0], math.sqrt(variance * inverse[0][0])


def simulate_mmc(servers: int, load: float, calls: int, seed: int, batches: int = 40):
    """Drive the dependency model with Poisson arrivals: per batch, the share of calls that
    waited, the mean wait, and the two controls (sampled mean service and interarrival time
    minus their true means)."""
    mean_service = 1.0
    rate = load * servers / mean_service
    dependency = Dependency(
        DependencySpec(servers=servers, latency=LatencySpec("exponential", mean_service)),
        random.Random(f"{seed}:dependency"),
        track_in_flight=False,
    )
    arrivals = random.Random(f"{seed}:arrivals")
    now = 0.0
    for _ in range(calls // 50):  # warm-up: the queue starts empty, far from its steady state
        now += arrivals.expovariate(rate)
        dependency.call(now)
    per_batch = calls // batches
    waited, waits, services, gaps = [], [], [], []
    for _ in range(batches):
        n_waited = 0
        total_wait = total_service = 0.0
        began = now
        for _ in range(per_batch):
            now += arrivals.expovariate(rate)
            end, wait, _ = dependency.call(now)
            if wait > 0:
                n_waited += 1
                total_wait += wait
            total_service += end - now - wait
        waited.append(n_waited / per_batch)
        waits.append(total_wait / per_batch)
        services.append(total_service / per_batch - mean_service)
        gaps.append((now - began) / per_batch - 1.0 / rate)
    return waited, waits, [services, gaps]


@pytest.mark.parametrize(
    ("load", "calls", "tolerance"),
    [
        # Lengths from the batch means of trial runs: the shortest runs whose standard error
        # is within half the tolerance (asserted below, so a shorter run cannot pass).
        (0.5, 220_000, 0.03),
        (0.8, 420_000, 0.03),
        (0.95, 1_200_000, 0.08),
    ],
)
def test_dependency_matches_erlang_c(load: float, calls: int, tolerance: float) -> None:
    servers = 2
    waited, waits, controls = simulate_mmc(servers, load, calls, seed=15)
    p_wait = erlang_c(servers, load)
    mean_wait = p_wait / (servers - load * servers)  # Wq = C / (cmu - lam), mu = 1
    for name, batches, exact in (("P(wait)", waited, p_wait), ("mean wait", waits, mean_wait)):
        estimate, error = controlled_mean(batches, controls)
        assert error <= tolerance * exact / 2, (
            f"{name} at load {load}: standard error {error / exact:.2%} is more than half the "
            f"tolerance {tolerance:.0%}: the run is too short for the check to mean anything"
        )
        assert abs(estimate / exact - 1) <= tolerance, (
            f"{name} at load {load}: simulated {estimate:.5g}, Erlang C {exact:.5g}"
        )
        # The plain batch mean agrees too, within its own (wider) error.
        plain = statistics.fmean(batches)
        plain_error = statistics.stdev(batches) / math.sqrt(len(batches))
        assert abs(plain - exact) <= 3 * plain_error + tolerance * exact


def test_erlang_c_formula_matches_known_values() -> None:
    """The formula itself, against values worked by hand: M/M/1 waits with probability rho;
    for c = 2, C = 2rho²/(1+rho)."""
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    assert erlang_c(2, 0.5) == pytest.approx(2 * 0.25 / 1.5)
    assert erlang_c(10, 0.5) == pytest.approx(0.036, abs=5e-4)  # the usual table's value


TOKEN_BUCKET = """
name = "bucket"
question = "Does a token bucket admit exactly its bound?"
seed = 3
duration = "{duration}"
interval = "1s"

[arrivals]
rate = "400/s"

[dependency]
servers = 200
latency = {{ distribution = "constant", mean = "10ms" }}

[[variants]]
name = "bucket"
[[variants.pipeline]]
strategy = "rate_limit"
capacity = 20
refill_rate = "{rate}/s"
max_wait = "0s"
"""


@pytest.mark.parametrize(("rate", "duration"), [(50, "60s"), (37, "45s")])
def test_token_bucket_admits_exactly_its_bound(tmp_path: Path, rate: int, duration: str) -> None:
    """Offered 400/s against a bucket of 20 refilled at ``rate``/s: by the last arrival at t
    it has admitted capacity + ⌊rate·t⌋, and everything else was refused at once."""
    path = tmp_path / "bucket.toml"
    path.write_text(TOKEN_BUCKET.format(rate=rate, duration=duration))
    scenario = load_scenario(path)
    last_arrival = _last_arrival(scenario)
    variant = run_scenario(scenario).data["variants"][0]
    summary, series = variant["summary"], variant["series"]
    bound = 20 + math.floor(rate * last_arrival)
    assert sum(series["limiter_admitted"]) == bound
    assert summary["succeeded"] == bound
    assert summary["refused"] == summary["requests"] - bound
    assert summary["refusals"] == {"RateLimited": summary["requests"] - bound}


def _last_arrival(scenario) -> float:  # type: ignore[no-untyped-def]
    """The time of the last arrival the engine will generate (same stream, same seed)."""
    from aioresilience.sim._engine import stream
    from aioresilience.sim._models import PoissonArrivals

    times = PoissonArrivals(scenario.arrivals, stream(scenario.seed, "arrivals"))
    last = 0.0
    while (t := times.next()) < scenario.duration:
        last = t
    return last


@given(
    st.lists(st.floats(min_value=1e-5, max_value=1e3, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]),
)
def test_histogram_quantiles_within_their_relative_error(values: list[float], q: float) -> None:
    histogram = LatencyHistogram()
    for v in values:
        histogram.add(v)
    exact = sorted(values)[max(1, math.ceil(q * len(values))) - 1]  # nearest rank
    (estimate,) = histogram.quantiles(q)
    assert estimate is not None
    assert abs(estimate / exact - 1) <= 0.0051  # (g - 1) / 2 with g = 1.01, and rounding
    assert histogram.mean() == pytest.approx(statistics.fmean(values), rel=1e-5)


def test_empty_histogram_has_no_quantiles() -> None:
    assert LatencyHistogram().quantiles(0.5, 0.99) == [None, None]
    assert LatencyHistogram().mean() is None

"""Scenario files: every builder method from TOML, and errors that name file, line and key."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from aioresilience.sim import ScenarioError, load_scenario, run_scenario
from aioresilience.sim._config import STRATEGIES, locate, parse_duration, parse_rate_per_s

HERE = Path(__file__).parent / "sim"

MINIMAL = """\
name = "minimal"
question = "Is this valid?"
duration = "10s"

[arrivals]
rate = "20/s"

[dependency]
servers = 2

[[variants]]
name = "plain"

[[variants.pipeline]]
strategy = "retry"
attempts = 3

[[variants.pipeline]]
strategy = "timeout"
seconds = "1s"
"""


def error_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    return str(raised.value)


def test_every_strategy_of_the_format_runs(tmp_path: Path) -> None:
    """tests/sim/everything.toml holds each builder method at least once, with its options;
    both variants run, and each strategy appears in the pipeline's description."""
    scenario = load_scenario(HERE / "everything.toml")
    kinds = {step.strategy for variant in scenario.variants for step in variant.steps}
    assert kinds == set(STRATEGIES)
    hooks = sys.modules["sim_hooks"]  # imported from beside the file, by the import paths
    assert str(HERE) not in sys.path  # (only while the file was read)
    hooks.CALLS.clear()
    result = run_scenario(scenario)
    # Every callable named by an import path was called by the real primitives.
    assert set(hooks.CALLS) == {
        "never", "no_hint", "before_sleep", "on_give_up", "state_changed", "fallback_used",
        "acceptable", "one_key", "behave", "counting", "counting_built", "from_cache", "load",
    }  # fmt: skip
    assert hooks.CALLS["counting_built"] == 2  # a fresh custom strategy per build: run, describe
    first = result.variant("all of them")
    described = [d["kind"] for d in first["pipeline"]]
    assert described[:3] == ["fallback", "timeout", "load_shed"]
    assert "hedge" in described and "chaos_outcome" in described
    s = first["summary"]
    # The fallback answered the failures it handles; chaos faults are not among them.
    assert s["substituted"] > 0 and set(s["failures"]) == {"InjectedFault"}
    limiters = result.variant("limiters")["summary"]
    assert limiters["refusals"]["RateLimited"] > 0
    assert json.loads(result.to_json())["variants"][0]["warnings"] == []


def test_closed_loop_users_follow_littles_law() -> None:
    """N users with think time Z and response time R make X = N / (R + Z) calls per second
    (Little's law over the whole cycle)."""
    scenario = load_scenario(HERE / "closed.toml")
    s = run_scenario(scenario).data["variants"][0]["summary"]
    users, think = scenario.arrivals.users, scenario.arrivals.think
    throughput = s["requests"] / scenario.duration
    assert throughput * (s["latency_s"]["mean"] + think) == pytest.approx(users, rel=0.03)


def test_a_misspelt_key_is_named_with_its_line_and_a_suggestion(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("attempts = 3", "atempts = 3"))
    assert message.startswith(f"{tmp_path / 's.toml'}:16: variants[0].pipeline[0].atempts: ")
    assert "unknown key 'atempts' (did you mean 'attempts'?)" in message


def test_a_callable_by_import_path_that_does_not_resolve_is_named(tmp_path: Path) -> None:
    (tmp_path / "my_hooks.py").write_text(
        "def sync(x):\n    return False\nasync def co(x):\n    pass\n"
    )
    base = """
        name = "x"
        [[variants]]
        name = "v"
        [[variants.pipeline]]
        strategy = "retry"
        """
    assert error_of(tmp_path, base + 'retry_on_result = "my_hooks:missing"').endswith(
        "s.toml:7: variants[0].pipeline[0].retry_on_result: retry_on_result: "
        "'my_hooks' has no 'missing'"
    )
    assert "cannot import 'no_such_module_here'" in error_of(
        tmp_path, base + 'retry_on_result = "no_such_module_here:f"'
    )
    assert 'must be an import path like "package.module:name", got 3' in error_of(
        tmp_path, base + "retry_on_result = 3"
    )
    assert "got 'my_hooks'" in error_of(tmp_path, base + 'retry_on_result = "my_hooks"')
    # An async function where a plain one belongs: the library's own check, with the line.
    assert "s.toml:5: variants[0].pipeline[0]: retry: retry_on_result must be a plain" in error_of(
        tmp_path, base + 'retry_on_result = "my_hooks:co"'
    )
    load_scenario_ok = tmp_path / "ok.toml"
    load_scenario_ok.write_text(textwrap.dedent(base + 'retry_on_result = "my_hooks:sync"'))
    assert (
        load_scenario(load_scenario_ok).variants[0].steps[0].options["retry_on_result"](1) is False
    )


def test_a_value_the_library_refuses_is_named_with_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("attempts = 3", "attempts = 0"))
    assert ":16: variants[0].pipeline[0].attempts: attempts must be >= 1, got 0" in message
    message = error_of(tmp_path, MINIMAL.replace('seconds = "1s"', 'seconds = "fast"'))
    assert ":20: variants[0].pipeline[1].seconds: seconds must be a duration" in message
    message = error_of(tmp_path, MINIMAL.replace('rate = "20/s"', 'rate = "20 a second"'))
    assert ":6: arrivals.rate: rate must look like '100/minute'" in message


def test_errors_inside_inline_tables_and_unknown_sections(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "attempts = 3", 'attempts = 3\nbackoff = { kind = "exponential", bse = "1s" }'
    )
    message = error_of(tmp_path, text)
    assert ":17: variants[0].pipeline[0].backoff.bse: unknown key 'bse'" in message
    message = error_of(tmp_path, MINIMAL + "\n[dependancy]\nservers = 3\n")
    assert ":22: dependancy: unknown key 'dependancy' (did you mean 'dependency'?)" in message
    message = error_of(tmp_path, MINIMAL.replace('strategy = "retry"', 'strategy = "retyr"'))
    assert ":15: variants[0].pipeline[0].strategy: strategy must be one of" in message
    message = error_of(tmp_path, MINIMAL.replace("attempts = 3", 'retry_on = "KeyErorr"'))
    assert "unknown exception 'KeyErorr'" in message


def test_not_toml_and_missing_files_and_unknown_scenarios(tmp_path: Path) -> None:
    assert "not valid TOML" in error_of(tmp_path, "name = \n")
    with pytest.raises(ScenarioError, match=r"no such file"):
        load_scenario(tmp_path / "missing.toml")
    with pytest.raises(ScenarioError, match=r"unknown scenario 'outgae' \(did you mean 'outage'"):
        load_scenario("outgae")


def test_locate_follows_tables_arrays_and_inline_tables() -> None:
    source = textwrap.dedent(
        """\
        top = 1
        [a]
        x = 1
        inner = { y = 2 }
        [[list]]
        k = 1
        [[list]]
        k = 2
        [[list.sub]]
        j = 3
        """
    )
    assert locate(source, ("top",)) == 1
    assert locate(source, ("a", "x")) == 3
    assert locate(source, ("a", "inner", "y")) == 4  # the line of the inline table
    assert locate(source, ("list", 0, "k")) == 6
    assert locate(source, ("list", 1, "k")) == 8
    assert locate(source, ("list", 1, "sub", 0, "j")) == 10
    assert locate(source, ("list", 1, "nothing")) == 7  # its table's header
    assert locate(source, ("elsewhere",)) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("200ms", 0.2), ("2s", 2.0), ("10m", 600.0), ("1h", 3600.0), ("1.5s", 1.5), (3, 3.0)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration("d", text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10 minutes", "-1s", "s", True, "1e999s", [1]])
def test_bad_durations_name_the_key(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^--duration must be"):
        parse_duration("--duration", bad)


def test_rates() -> None:
    assert parse_rate_per_s("r", "200/s") == 200.0
    assert parse_rate_per_s("r", "5 per 2 seconds") == 2.5
    assert parse_rate_per_s("r", 12) == 12.0
    with pytest.raises(ValueError, match=r"^--rate must look like"):
        parse_rate_per_s("--rate", "fast")


def test_replace_checks_and_rescales_the_interval() -> None:
    scenario = load_scenario("outage")
    assert scenario.replace(duration=3600.0).interval == 10.0  # at most 600 intervals
    with pytest.raises(ScenarioError, match="duration must be > 0"):
        scenario.replace(duration=0.0)


def test_an_answer_names_the_variants_it_compares(tmp_path: Path) -> None:
    text = MINIMAL + '\n[answer]\nkind = "outage"\nbaseline = "plain"\n'
    message = error_of(tmp_path, text)
    assert ":22: answer: an answer of kind 'outage' needs candidate = <a variant's name>" in message
    message = error_of(tmp_path, text + 'candidate = "fancy"\n')
    assert ":25: answer.candidate: candidate must name a variant (plain), got 'fancy'" in message


def test_an_answer_key_no_kind_reads_is_refused(tmp_path: Path) -> None:
    """A misspelt role would otherwise leave its variant out of the answer, quietly."""
    text = MINIMAL + '\n[answer]\nkind = "latency-spike"\nbaseline = "plain"\nhegde = "plain"\n'
    message = error_of(tmp_path, text)
    assert ":25: answer.hegde: unknown key 'hegde' (did you mean 'hedge'?)" in message
    text = MINIMAL + '\n[answer]\nkind = "outage"\nbaseline = "plain"\ncandidate = "plain"\n'
    assert load_scenario_text(tmp_path, text + 'timeout = "plain"\n', fails=True)
    # The overload's answer compares every variant it is given, under any label.
    text = MINIMAL + '\n[answer]\nkind = "overload"\nbaseline = "plain"\nmine = "plain"\n'
    assert load_scenario_text(tmp_path, text).answer.variants == {
        "baseline": "plain",
        "mine": "plain",
    }


def load_scenario_text(tmp_path: Path, text: str, fails: bool = False) -> Any:
    path = tmp_path / "s.toml"
    path.write_text(text)
    if not fails:
        return load_scenario(path)
    with pytest.raises(ScenarioError, match="unknown key"):
        load_scenario(path)
    return True


def test_a_retry_deadline_is_a_time_into_the_run(tmp_path: Path) -> None:
    """``deadline`` on the virtual clock, which starts at 0: against a dead dependency,
    five attempts per call before it, one after it."""
    text = MINIMAL.replace('duration = "10s"', 'duration = "40s"\ndrain = "0s"')
    text = text.replace("servers = 2", "servers = 50\nerror_rate = 1.0")
    backoff = 'backoff = { kind = "constant", delay = "0s" }'
    text = text.replace("attempts = 3", f"attempts = 5\n{backoff}")
    calls = {}
    for deadline in ("none", "20s", "0s"):
        spelled = text.replace("attempts = 5", f'attempts = 5\ndeadline = "{deadline}"')
        summary = run_scenario(load_scenario_text(tmp_path, spelled)).data["variants"][0]
        calls[deadline] = summary["summary"]["amplification"]
    # (calls still retrying when the run ends count as calls, not all their attempts yet)
    assert calls["none"] == pytest.approx(5.0, rel=0.01)
    assert calls["0s"] == pytest.approx(1.0, rel=0.01)
    assert calls["20s"] == pytest.approx(3.0, abs=0.15)


def test_a_load_shed_signal_of_ones_own_takes_no_capacity(tmp_path: Path) -> None:
    step = '[[variants.pipeline]]\nstrategy = "load_shed"\nsignal = "math:pi"\ncapacity = 10\n'
    message = error_of(tmp_path, MINIMAL + step)
    assert "load_shed: capacity scales the in_flight signal only" in message
    message = error_of(tmp_path, MINIMAL + step.replace('"math:pi"', '"busy"'))
    assert "signal must be an import path" in message


def test_an_answer_whose_event_is_cut_off_compares_goodput() -> None:
    """--duration 50s ends the outage scenario before its outage (at 60 s) begins."""
    result = run_scenario(load_scenario("outage").replace(duration=50.0))
    assert result.answer.startswith("Goodput: 'naive retry' ")
    assert "the same served by 'naive retry', 'budget + breaker'" in result.answer
    assert result.data["variants"][0]["windows"] == []


GOODPUT = """\
name = "goodput"
seed = 1
duration = "60s"
[arrivals]
rate = "100/s"
[dependency]
servers = 100
latency = { distribution = "constant", mean = "10ms" }
[[variants]]
name = "fixed window 50/s"
[[variants.pipeline]]
strategy = "rate_limit"
algorithm = "fixed_window"
max_requests = 50
window_seconds = 1
"""


def test_goodput_counts_only_what_the_run_served(tmp_path: Path) -> None:
    # A limiter of 50/s with no max_wait queues the excess: the calls served in the drain
    # after the run counted in goodput, which read 100/s, twice what the limiter lets by.
    path = tmp_path / "goodput.toml"
    path.write_text(GOODPUT)
    (variant,) = run_scenario(load_scenario(path)).data["variants"]
    assert 49.5 <= variant["summary"]["goodput_per_s"] <= 50.5


def test_options_the_library_takes_are_read(tmp_path: Path) -> None:
    # failure_threshold = "none": a breaker tripped by its rate rule only (the library's
    # None); mode = "shaper": the leaky bucket's queue. Both were refused.
    text = MINIMAL.replace(
        'strategy = "retry"\nattempts = 3',
        'strategy = "circuit_breaker"\nfailure_threshold = "none"\nfailure_rate_threshold = 0.5',
    )
    load_scenario(_written(tmp_path, text))
    shaper = MINIMAL.replace(
        'strategy = "retry"\nattempts = 3',
        'strategy = "rate_limit"\nalgorithm = "leaky_bucket"\nmode = "shaper"\n'
        "capacity = 5\nleak_rate = 5",
    )
    load_scenario(_written(tmp_path, shaper))


def _written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_a_negative_factor_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("servers = 2", "servers = 2\nslowdown = -1")
    assert "dependency.slowdown: slowdown must be >= 0" in error_of(tmp_path, text)
    # The knee (a utilisation) and a lognormal's sigma were read as any float.
    text = MINIMAL.replace("servers = 2", "servers = 2\nknee = -0.5")
    assert "dependency.knee: knee must be >= 0" in error_of(tmp_path, text)
    lognormal = 'latency = { distribution = "lognormal", mean = "50ms", sigma = -1 }'
    text = MINIMAL.replace("servers = 2", "servers = 2\n" + lognormal)
    assert "sigma must be >= 0" in error_of(tmp_path, text)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # users = 10 without kind = "closed" ran open-loop arrivals at the default 100/s.
        ('rate = "20/s"', "users = 10", "arrivals.users: users applies to closed-loop"),
        ('rate = "20/s"', 'think = "1s"', "arrivals.think: think applies to closed-loop"),
        (
            'rate = "20/s"',
            'kind = "closed"\nusers = 5\nrate = "20/s"',
            "arrivals.rate: rate applies to open-loop (poisson) arrivals only",
        ),
        (
            'rate = "20/s"',
            'kind = "closed"\nusers = 5\nbursts = [{ start = "1s", end = "2s", factor = 3 }]',
            "arrivals.bursts: bursts applies to open-loop (poisson) arrivals only",
        ),
        (
            "servers = 2",
            'servers = 2\nlatency = { mean = "50ms", sigma = 2 }',
            'dependency.latency.sigma: sigma applies to distribution = "lognormal" only',
        ),
        (
            "servers = 2",
            'servers = 2\noutages = [{ start = "1s", end = "2s", hang = "5s" }]',
            "dependency.outages[0].hang: hang applies to mode = \"hang\" only, got mode = 'error'",
        ),
        (
            "servers = 2",
            "servers = 2\nknee = 0.8",
            "dependency.knee: knee applies with slowdown > 0",
        ),
        (
            "servers = 2",
            "servers = 2\ncold_factor = 4",
            "dependency.cold_factor: cold_factor applies with recovery > 0",
        ),
    ],
)
def test_a_key_its_kind_does_not_read_is_refused(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    # Each was read and dropped: the run went on without it, and without a word.
    assert message in error_of(tmp_path, MINIMAL.replace(old, new))


def test_a_lognormal_sigma_too_large_for_its_draw_is_refused(tmp_path: Path) -> None:
    # sigma = 1e200 loaded and the run raised OverflowError (sigma ** 2); sigma = 40 made
    # every service time 0 (the median, mean * exp(-800), underflows).
    for sigma in ("1e200", "40"):
        lognormal = f'latency = {{ distribution = "lognormal", mean = "50ms", sigma = {sigma} }}'
        text = MINIMAL.replace("servers = 2", "servers = 2\n" + lognormal)
        assert "dependency.latency.sigma: sigma is too large" in error_of(tmp_path, text)
    lognormal = 'latency = { distribution = "lognormal", mean = "50ms", sigma = 3 }'
    load_scenario(_written(tmp_path, MINIMAL.replace("servers = 2", "servers = 2\n" + lognormal)))


def test_replace_keeps_the_interval_bounds(tmp_path: Path) -> None:
    # A duration given on the command line skipped the bound on intervals when the file set
    # `interval` (300 h in 1 s intervals: 1.08 million of them, 1.5 GB).
    text = MINIMAL.replace('duration = "10s"', 'duration = "10s"\ninterval = "1s"')
    scenario = load_scenario(_written(tmp_path, text))
    with pytest.raises(ScenarioError, match="at most 100,000 intervals"):
        scenario.replace(duration=300 * 3600.0)
    with pytest.raises(ScenarioError, match="must not exceed duration"):
        scenario.replace(duration=0.5)


@pytest.mark.parametrize(
    ("arrivals", "message"),
    [
        (
            'rate = 1e-320\ndiurnal = { amplitude = 0.5, period = "5s" }',
            "rate must be 0 or >= 1e-12",
        ),
        ("rate = 10\ndiurnal = { amplitude = 0.5, period = 1e-320 }", "period must be >= 1e-12s"),
        ("rate = 1e-300", "rate must be 0 or >= 1e-12"),
    ],
)
def test_tiny_rates_and_periods_are_refused_when_loaded(
    tmp_path: Path, arrivals: str, message: str
) -> None:
    # Both made an arrival time inf, and its diurnal sine a 'math domain error' mid-run.
    assert message in error_of(tmp_path, MINIMAL.replace('rate = "20/s"', arrivals))


def test_a_run_shorter_than_a_second_has_a_default_interval(tmp_path: Path) -> None:
    # A file without `interval` and a duration under 1 s was refused ("interval must not
    # exceed duration", naming a key the file does not have); so was --duration 500ms.
    text = MINIMAL.replace('duration = "10s"', 'duration = "500ms"')
    scenario = load_scenario(_written(tmp_path, text))
    assert scenario.interval == 0.5
    assert load_scenario("outage").replace(duration=0.25).interval == 0.25
    summary = run_scenario(scenario).data["variants"][0]["summary"]
    assert summary["requests"] > 0


def test_closed_loop_users_need_a_think_time_above_zero(tmp_path: Path) -> None:
    # think = 0 loaded, then every user's task died of a ZeroDivisionError after its first
    # call ("Task exception was never retrieved"), and the run reported one call per user.
    text = MINIMAL.replace('rate = "20/s"', 'kind = "closed"\nusers = 5\nthink = 0')
    assert "arrivals.think: think must be a duration > 0, got 0" in error_of(tmp_path, text)


def test_closed_loop_users_thinking_at_the_end_are_not_unfinished_calls(tmp_path: Path) -> None:
    # A user still thinking when the drain ended was counted as an unfinished request: 10
    # users thinking 30 s with a 10 s drain read "unfinished 6" beside 26 requests that had
    # all succeeded (the row then added up to more than 100 %).
    text = MINIMAL.replace('rate = "20/s"', 'kind = "closed"\nusers = 10\nthink = "30s"').replace(
        'duration = "10s"', 'duration = "60s"\ndrain = "10s"'
    )
    s = run_scenario(load_scenario(_written(tmp_path, text))).data["variants"][0]["summary"]
    assert s["requests"] == s["succeeded"] > 0
    assert s["unfinished"] == 0


def test_closed_loop_arrivals_are_bounded_too(tmp_path: Path) -> None:
    # The arrivals bound was for open-loop arrivals alone: 5 users thinking 1e-300 s loaded
    # and the run never ended (virtual time stalls).
    text = MINIMAL.replace('rate = "20/s"', 'kind = "closed"\nusers = 5\nthink = 1e-300')
    assert "arrivals.think: at most 1,000,000,000 arrivals" in error_of(tmp_path, text)
    scenario = load_scenario(
        _written(tmp_path, MINIMAL.replace('rate = "20/s"', 'kind = "closed"\nusers = 5'))
    )
    with pytest.raises(ScenarioError, match="at most 1,000,000,000 arrivals"):
        scenario.replace(duration=1e9)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rate": -5}, "rate must be a rate >= 0"),
        ({"rate": float("nan")}, "rate must be a rate >= 0"),
        ({"rate": float("inf")}, "rate must be a rate >= 0"),  # (arrived forever at t=0)
        ({"rate": True}, "rate must be a rate string"),
        ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5"),
        ({"seed": "x"}, "seed must be an integer >= 0, got 'x'"),
        ({"seed": True}, "seed must be an integer >= 0, got True"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"duration": True}, "duration must be a duration"),
        ({"rate": 10**400}, "rate must be a rate >= 0"),
        ({"duration": "1"}, "duration must be a duration like"),
        ({"duration": 10**400}, "duration must be a finite duration"),
    ],
)
def test_simulate_checks_its_overrides(overrides: dict[str, Any], message: str) -> None:
    # simulate() took them as they were: rate=-5 or nan ran with no traffic, rate=inf never
    # ended, seed=1.5 and duration=True ran, duration="10s" was a TypeError.
    from aioresilience.sim import simulate

    with pytest.raises(ScenarioError, match=message):
        simulate("outage", **overrides)


def test_simulate_takes_what_the_command_line_takes() -> None:
    from aioresilience.sim import simulate

    scenario = load_scenario("outage")
    expected = run_scenario(
        scenario.replace(seed=2, duration=5.0, arrivals=scenario.arrivals.with_rate(20.0))
    )
    assert simulate("outage", seed=2, duration="5s", rate="20/s").to_json() == expected.to_json()
    with pytest.raises(ScenarioError, match="closed-loop users, not a rate"):
        simulate(HERE / "closed.toml", rate=5)


def test_a_peak_rate_that_overflows_is_refused(tmp_path: Path) -> None:
    # The thinning bound was inf: every candidate arrival at the same instant, forever.
    text = MINIMAL.replace(
        'rate = "20/s"', 'rate = "20/s"\nbursts = [{ start = "1s", end = "2s", factor = 1e308 }]'
    )
    assert "arrivals.bursts: the peak rate" in error_of(tmp_path, text)
    scenario = load_scenario(
        _written(
            tmp_path,
            MINIMAL.replace(
                'rate = "20/s"',
                'rate = "20/s"\nbursts = [{ start = "1s", end = "2s", factor = 10 }]',
            ),
        )
    )
    with pytest.raises(ScenarioError, match="the arrival rate overflows"):
        scenario.replace(arrivals=scenario.arrivals.with_rate(1e308))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('duration = "10s"', "duration = 1" + "0" * 400, "duration: duration must be a finite"),
        ('rate = "20/s"', "rate = 1" + "0" * 400, "arrivals.rate: rate must be a rate >= 0"),
        ("servers = 2", "servers = 1" + "0" * 400, "servers: servers must be <= 1,000,000"),
        ("servers = 2", "servers = 100000000000", "servers: servers must be <= 1,000,000"),
        ("servers = 2", "servers = 2\nknee = 1" + "0" * 400, "dependency.knee: knee must be a"),
    ],
)
def test_a_huge_integer_is_one_error_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    # An OverflowError traceback (int too large to convert to float, or for a list of
    # servers) or a MemoryError (servers = 100000000000), not a ScenarioError.
    assert message in error_of(tmp_path, MINIMAL.replace(old, new))


def test_a_compare_answer_without_calls_says_so(tmp_path: Path) -> None:
    # With no traffic (rate = 0) the answer read "'plain' 0/s (None% served)".
    scenario = load_scenario(_written(tmp_path, MINIMAL.replace('rate = "20/s"', "rate = 0")))
    answer = run_scenario(scenario).answer
    assert "None" not in answer
    assert "'plain' 0/s (no calls)" in answer


def test_a_rate_too_high_to_simulate_is_refused(tmp_path: Path) -> None:
    # rate = 1e300 loaded and the run never ended (1e301 arrivals; once 1/rate is below the
    # clock's float spacing, virtual time stops); --rate and --duration likewise.
    message = error_of(tmp_path, MINIMAL.replace('rate = "20/s"', "rate = 1e300"))
    assert ":6: arrivals.rate: at most 1,000,000,000 arrivals" in message
    scenario = load_scenario(_written(tmp_path, MINIMAL))
    with pytest.raises(ScenarioError, match="at most 1,000,000,000 arrivals"):
        scenario.replace(duration=1e9)
    with pytest.raises(ScenarioError, match="at most 1,000,000,000 arrivals"):
        scenario.replace(arrivals=scenario.arrivals.with_rate(1e12))


def test_recovery_timeout_is_read_as_the_builder_takes_it(tmp_path: Path) -> None:
    # The builder's circuit_breaker takes the seed guide's recovery_timeout (another name for
    # break_duration); the TOML form refused it as an unknown key.
    breaker = 'strategy = "circuit_breaker"\nfailure_threshold = 2\nrecovery_timeout = "7s"'
    text = MINIMAL.replace('strategy = "retry"\nattempts = 3', breaker)
    scenario = load_scenario(_written(tmp_path, text))
    assert scenario.variants[0].steps[0].options["recovery_timeout"] == 7.0
    both = text.replace('recovery_timeout = "7s"', 'recovery_timeout = "7s"\nbreak_duration = "7s"')
    assert "recovery_timeout is another name for break_duration" in error_of(tmp_path, both)


def test_the_in_flight_signal_leaves_out_the_call_being_decided(tmp_path: Path) -> None:
    # It counted the call itself: with capacity = 1 every call was shed, even alone (the
    # library's InFlight, fed by the shedder, counts only the calls it admitted).
    text = textwrap.dedent(
        """\
        name = "shed"
        question = "Is a lone call shed?"
        duration = "10s"

        [arrivals]
        rate = "1/s"

        [dependency]
        servers = 2
        latency = { distribution = "constant", mean = "LATENCY" }

        [[variants]]
        name = "shed"

        [[variants.pipeline]]
        strategy = "load_shed"
        capacity = 1
        """
    )

    def summary(latency: str) -> Any:
        scenario = load_scenario_text(tmp_path, text.replace("LATENCY", latency))
        return run_scenario(scenario).variant("shed")["summary"]

    alone = summary("10ms")  # no call overlaps another
    assert alone["requests"] > 0 and alone["refused"] == 0
    crowded = summary("5s")  # each call overlaps the next ones: one in flight sheds them
    assert crowded["refused"] > 0 and crowded["succeeded"] > 0


def test_a_hedge_of_a_million_attempts_per_call_is_refused(tmp_path: Path) -> None:
    # max_hedged = 1000000 with delay 0 loaded, and the run started a million tasks a request
    # (over a minute for a 10 s run, stopped by hand).
    step = (
        '[[variants.pipeline]]\nstrategy = "hedge"\nidempotent = true\ndelay = "0s"\n'
        "max_hedged = 1000000\n"
    )
    assert "max_hedged must be <= 100, got 1000000" in error_of(tmp_path, MINIMAL + step)
    load_scenario_text(tmp_path, MINIMAL + step.replace("1000000", "100"))

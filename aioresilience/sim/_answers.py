"""The measured answer of a scenario: figures read from the variants' series and summaries,
and one sentence that states them.

Each kind of answer (``[answer] kind = ...`` in the scenario) names the variants it compares
(``baseline``, ``candidate``...); :func:`answer` returns ``(sentence, findings)``, the
findings being the figures the sentence quotes (the result's ``findings``, and what the
tests assert).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._config import Scenario
from ._metrics import round_sig

__all__ = ["answer", "recovery_time", "window_sum"]

Variants = Mapping[str, Mapping[str, Any]]


def window_sum(variant: Mapping[str, Any], key: str, start: float, end: float) -> int:
    """The sum of series ``key`` over the intervals that begin in ``[start, end)``."""
    series = variant["series"]
    return sum(v for t, v in zip(series["t"], series[key], strict=True) if start <= t < end)


def recovery_time(
    variant: Mapping[str, Any], since: float, *, share: float = 0.9, sustained: int = 3
) -> float | None:
    """Seconds from ``since`` to the start of the first interval from which the variant
    serves at least ``share`` of the calls offered, ``sustained`` intervals in a row (None:
    never before the end)."""
    series = variant["series"]
    run = 0
    first: float | None = None
    for t, offered, succeeded in zip(
        series["t"], series["offered"], series["succeeded"], strict=True
    ):
        if t < since:
            continue
        if offered and succeeded >= share * offered:
            if run == 0:
                first = t
            run += 1
            if run >= sustained:
                return round_sig(max(0.0, (first or t) - since))
        else:
            run = 0
    return None


def _worst(variant: Mapping[str, Any], key: str, start: float, end: float) -> float | None:
    series = variant["series"]
    values = [
        v for t, v in zip(series["t"], series[key], strict=True) if start <= t < end and v
    ]
    return max(values) if values else None


def _success_pct(variant: Mapping[str, Any], start: float, end: float) -> float | None:
    offered = window_sum(variant, "offered", start, end)
    if not offered:
        return None
    return round_sig(100.0 * window_sum(variant, "succeeded", start, end) / offered, 3)


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.3g} s"


def _recovered(seconds: float | None) -> str:
    return "had not recovered by the end" if seconds is None else f"within {_s(seconds)}"


def _outage(scenario: Scenario, variants: Variants, roles: Mapping[str, str]) -> Any:
    base, cand = variants[roles["baseline"]], variants[roles["candidate"]]
    outage = scenario.dependency.outages[0]
    base_calls = window_sum(base, "dependency_calls", outage.start, outage.end)
    cand_calls = window_sum(cand, "dependency_calls", outage.start, outage.end)
    base_rec = recovery_time(base, outage.end)
    cand_rec = recovery_time(cand, outage.end)
    share = round_sig(cand_calls / base_calls, 3) if base_calls else None
    sentence = (
        f"During the outage, {cand['name']!r} sent {cand_calls} calls to the dead dependency, "
        f"{100 * (share or 0):.0f}% of the {base_calls} that {base['name']!r} sent; after it "
        f"came back, {cand['name']!r} served calls again {_recovered(cand_rec)} and "
        f"{base['name']!r} {_recovered(base_rec)}."
    )
    findings = {
        "outage_dependency_calls": {base["name"]: base_calls, cand["name"]: cand_calls},
        "outage_call_share": share,
        "recovery_s": {base["name"]: base_rec, cand["name"]: cand_rec},
    }
    return sentence, findings


def _latency_spike(scenario: Scenario, variants: Variants, roles: Mapping[str, str]) -> Any:
    spike = scenario.dependency.spikes[0]
    names = [roles[r] for r in ("baseline", "timeout", "hedge") if r in roles]
    worst = {n: _worst(variants[n], "p99_s", spike.start, spike.end) for n in names}
    ok = {n: _success_pct(variants[n], spike.start, spike.end) for n in names}
    calls = {n: variants[n]["summary"]["amplification"] for n in names}
    parts = [
        f"{n!r} {_s(worst[n])} ({ok[n]}% served, {calls[n]} dependency calls per request)"
        for n in names
    ]
    best = min(names, key=lambda n: (worst[n] is None, worst[n] or 0.0))
    sentence = (
        f"During the latency spike the worst p99 of the calls served was "
        f"{'; '.join(parts)}: {best!r} kept the tail shortest."
    )
    return sentence, {"spike_worst_p99_s": worst, "spike_success_pct": ok, "best": best}


def _overload(scenario: Scenario, variants: Variants, roles: Mapping[str, str]) -> Any:
    names = list(roles.values())
    bursts = scenario.arrivals.bursts
    start, end = (bursts[0].start, bursts[0].end) if bursts else (0.0, scenario.duration)
    span = end - start
    goodput = {
        n: round_sig(window_sum(variants[n], "succeeded", start, end) / span, 4) for n in names
    }
    p99 = {n: _worst(variants[n], "p99_s", start, end) for n in names}
    best = max(names, key=lambda n: goodput[n])
    parts = [f"{n!r} {goodput[n]:g}/s (worst p99 {_s(p99[n])})" for n in names]
    sentence = f"Under overload the goodput was {'; '.join(parts)}: {best!r} served the most."
    return sentence, {"overload_goodput_per_s": goodput, "overload_worst_p99_s": p99, "best": best}


def _quota(scenario: Scenario, variants: Variants, roles: Mapping[str, str]) -> Any:
    base, cand = variants[roles["baseline"]], variants[roles["candidate"]]

    def quota_429s(v: Mapping[str, Any]) -> int:
        return int(v["summary"]["dependency_answers"].get("QuotaExceeded", 0))

    figures = {
        v["name"]: {
            "429s": quota_429s(v),
            "goodput_per_s": v["summary"]["goodput_per_s"],
            "amplification": v["summary"]["amplification"],
            "p99_s": v["summary"]["latency_s"]["p99"],
        }
        for v in (base, cand)
    }
    b, c = figures[base["name"]], figures[cand["name"]]
    sentence = (
        f"{cand['name']!r} got {c['429s']} answers of 429 against {b['429s']} for "
        f"{base['name']!r}, for a goodput of {c['goodput_per_s']:g}/s against "
        f"{b['goodput_per_s']:g}/s, with {c['amplification']} dependency calls per request "
        f"against {b['amplification']} (p99 {_s(c['p99_s'])} against {_s(b['p99_s'])})."
    )
    return sentence, {"quota": figures}


def _herd(scenario: Scenario, variants: Variants, roles: Mapping[str, str]) -> Any:
    base, cand = variants[roles["baseline"]], variants[roles["candidate"]]
    outage = scenario.dependency.outages[0]
    end = scenario.duration
    refused = {
        v["name"]: window_sum(v, "dependency_errors", outage.end, end) for v in (base, cand)
    }
    peak = {v["name"]: _worst(v, "dependency_calls", outage.end, end) for v in (base, cand)}
    recovery = {v["name"]: recovery_time(v, outage.end) for v in (base, cand)}
    sentence = (
        f"After the restart, {cand['name']!r} had the dependency refuse {refused[cand['name']]} "
        f"calls (peak {peak[cand['name']]} calls in an interval) and served again "
        f"{_recovered(recovery[cand['name']])}; {base['name']!r} had {refused[base['name']]} "
        f"refused (peak {peak[base['name']]}) and {_recovered(recovery[base['name']])}."
    )
    return sentence, {
        "refused_after_restart": refused,
        "peak_calls_per_interval": peak,
        "recovery_s": recovery,
    }


def _compare(scenario: Scenario, variants: Variants, roles: Mapping[str, str]) -> Any:
    names: Sequence[str] = list(variants)
    best = max(names, key=lambda n: variants[n]["summary"]["goodput_per_s"])
    parts = [
        f"{n!r} {variants[n]['summary']['goodput_per_s']:g}/s"
        f" ({variants[n]['summary']['success_pct']}% served)"
        for n in names
    ]
    return f"Goodput: {'; '.join(parts)}: {best!r} served the most.", {"best": best}


_KINDS: dict[str, Callable[[Scenario, Variants, Mapping[str, str]], Any]] = {
    "outage": _outage,
    "latency-spike": _latency_spike,
    "overload": _overload,
    "quota": _quota,
    "thundering-herd": _herd,
    "compare": _compare,
}


def answer(scenario: Scenario, variants: Sequence[Mapping[str, Any]]) -> tuple[str, Any]:
    """The sentence and the figures answering ``scenario``'s question."""
    by_name = {v["name"]: v for v in variants}
    kind = scenario.answer.kind
    roles = scenario.answer.variants
    needs_window = {"outage": "outages", "thundering-herd": "outages", "latency-spike": "spikes"}
    if kind in needs_window and not getattr(scenario.dependency, needs_window[kind]):
        return _compare(scenario, by_name, roles)
    if not set(roles.values()) <= set(by_name):  # a variant left out (--only): compare
        return _compare(scenario, by_name, roles)
    try:
        return _KINDS[kind](scenario, by_name, roles)
    except KeyError:  # a role the kind needs is not named
        return _compare(scenario, by_name, roles)

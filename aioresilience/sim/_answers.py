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

__all__ = ["answer", "recovery_time", "window", "window_sum"]

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


def window(variant: Mapping[str, Any], label: str) -> Mapping[str, Any]:
    """The variant's window ``label`` (``"outage 1"``, ``"spike 1"``, ``"burst 1"``)."""
    for found in variant["windows"]:
        if found["label"] == label:
            return found  # type: ignore[no-any-return]
    raise KeyError(f"{variant['name']!r} has no window {label!r}")


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.3g} s"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def _x(value: float | None) -> str:
    """A ratio (calls per request) to 3 digits; "n/a" when there were no requests."""
    return "n/a" if value is None else f"{value:.3g}"


def _recovered(seconds: float | None) -> str:
    return "had not recovered by the end" if seconds is None else f"within {_s(seconds)}"


def _served_again(seconds: float | None) -> str:
    """The candidate's half of the outage answer's last clause (the verb included)."""
    if seconds is None:
        return _recovered(seconds)
    return f"served calls again {_recovered(seconds)}"


def _outage(
    scenario: Scenario, variants: Variants, roles: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    base, cand = variants[roles["baseline"]], variants[roles["candidate"]]
    outage = scenario.dependency.outages[0]
    base_calls = window(base, "outage 1")["dependency_calls"]
    cand_calls = window(cand, "outage 1")["dependency_calls"]
    base_rec = recovery_time(base, outage.end)
    cand_rec = recovery_time(cand, outage.end)
    share = round_sig(cand_calls / base_calls, 3) if base_calls else None
    after = (
        "; the run ended before the dependency came back"
        if outage.end >= scenario.duration
        else f"; after it came back, {cand['name']!r} {_served_again(cand_rec)} and "
        f"{base['name']!r} "
        f"{_recovered(base_rec) if cand_rec is not None else _served_again(base_rec)}"
    )
    sentence = (
        f"During the outage, {cand['name']!r} sent {cand_calls} calls to the dead dependency, "
        f"{_pct(None if share is None else 100 * share)} of the {base_calls} that "
        f"{base['name']!r} sent{after}."
    )
    findings = {
        "outage_dependency_calls": {base["name"]: base_calls, cand["name"]: cand_calls},
        "outage_call_share": share,
        "recovery_s": {base["name"]: base_rec, cand["name"]: cand_rec},
    }
    return sentence, findings


def _latency_spike(
    scenario: Scenario, variants: Variants, roles: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    names = [roles[r] for r in ("baseline", "timeout", "hedge") if r in roles]
    spikes = {n: window(variants[n], "spike 1") for n in names}
    p99 = {n: spikes[n]["latency_s"]["p99"] for n in names}
    served = {n: spikes[n]["success_pct"] for n in names}
    calls = {n: variants[n]["summary"]["amplification"] for n in names}
    parts = [
        f"{n!r} {_s(p99[n])} ({_pct(served[n])} served, {_x(calls[n])} calls per request)"
        for n in names
    ]
    best = min(names, key=lambda n: (p99[n] is None, p99[n] or 0.0))
    sentence = (
        f"For the calls made during the latency spike, p99 latency was {'; '.join(parts)}: "
        f"{best!r} kept the tail shortest."
    )
    return sentence, {"spike_p99_s": p99, "spike_success_pct": served, "best": best}


def _overload(
    scenario: Scenario, variants: Variants, roles: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    names = list(roles.values())
    bursts = {n: window(variants[n], "burst 1") for n in names}
    span = bursts[names[0]]["end_s"] - bursts[names[0]]["start_s"]
    goodput = {n: round_sig(bursts[n]["succeeded"] / span, 4) for n in names}
    p99 = {n: bursts[n]["latency_s"]["p99"] for n in names}
    best = max(names, key=lambda n: goodput[n])
    parts = [f"{n!r} {goodput[n]:g}/s (p99 {_s(p99[n])})" for n in names]
    sentence = (
        f"While traffic was past capacity, the calls served per second were {'; '.join(parts)}: "
        f"{best!r} served the most."
    )
    return sentence, {"overload_goodput_per_s": goodput, "overload_p99_s": p99, "best": best}


def _quota(
    scenario: Scenario, variants: Variants, roles: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
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
        f"{base['name']!r}, serving {c['goodput_per_s']:.4g} calls/s against "
        f"{b['goodput_per_s']:.4g}/s with {_x(c['amplification'])} dependency calls per "
        f"request against {_x(b['amplification'])}, and a p99 of {_s(c['p99_s'])} against "
        f"{_s(b['p99_s'])}."
    )
    return sentence, {"quota": figures}


def _refusing_until(variant: Mapping[str, Any], since: float) -> float | None:
    """Seconds from ``since`` to the end of the last interval in which the dependency
    refused or failed a call (None: it never did after ``since``)."""
    series = variant["series"]
    step = series["t"][1] - series["t"][0] if len(series["t"]) > 1 else 0.0
    last = None
    for t, errors in zip(series["t"], series["dependency_errors"], strict=True):
        if t + step > since and errors:
            last = t + step
    return None if last is None else round_sig(last - since)


def _herd(
    scenario: Scenario, variants: Variants, roles: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    base, cand = variants[roles["baseline"]], variants[roles["candidate"]]
    outage = scenario.dependency.outages[0]
    names = (cand["name"], base["name"])
    held = {v["name"]: window(v, "outage 1")["success_pct"] for v in (base, cand)}
    refused = {
        v["name"]: window_sum(v, "dependency_errors", outage.end, scenario.duration)
        for v in (base, cand)
    }
    until = {v["name"]: _refusing_until(v, outage.end) for v in (base, cand)}

    def part(n: str) -> str:
        return (
            f"{n!r} served {_pct(held[n])} of the requests the restart failed, the dependency "
            f"refusing {refused[n]} calls over the {_s(until[n])} after it"
        )

    if outage.end >= scenario.duration:
        sentence = "The run ended before the dependency restarted: nothing to compare yet."
    else:
        sentence = f"After the restart, {part(names[0])}; {part(names[1])}."
    return sentence, {
        "held_calls_served_pct": held,
        "refused_after_restart": refused,
        "refusing_for_s": until,
    }


def _compare(
    scenario: Scenario, variants: Variants, roles: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    names: Sequence[str] = list(variants)
    goodput = {n: variants[n]["summary"]["goodput_per_s"] for n in names}
    pcts = {n: variants[n]["summary"]["success_pct"] for n in names}
    parts = [
        f"{n!r} {goodput[n]:g}/s ({'no calls' if pcts[n] is None else f'{pcts[n]}% served'})"
        for n in names
    ]
    top = max(goodput.values())
    best = [n for n in names if goodput[n] == top]
    verdict = (
        f"{best[0]!r} served the most"
        if len(best) == 1
        else "the same served by " + ", ".join(map(repr, best))
    )
    return f"Goodput: {'; '.join(parts)}: {verdict}.", {"best": best[0] if len(best) == 1 else None}


Measure = Callable[[Scenario, Variants, Mapping[str, str]], tuple[str, dict[str, Any]]]

_KINDS: dict[str, Measure] = {
    "outage": _outage,
    "latency-spike": _latency_spike,
    "overload": _overload,
    "quota": _quota,
    "thundering-herd": _herd,
    "compare": _compare,
}


#: The event window each kind of answer reads.
_WINDOWS = {
    "outage": "outage 1",
    "thundering-herd": "outage 1",
    "latency-spike": "spike 1",
    "overload": "burst 1",
}


def answer(scenario: Scenario, variants: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The sentence and the figures answering ``scenario``'s question. When what the kind of
    answer compares is not in this run (its event starts after a shortened ``--duration``,
    or a variant it names did not run), the variants' goodput is compared instead."""
    by_name = {v["name"]: v for v in variants}
    kind = scenario.answer.kind
    roles = scenario.answer.variants
    wanted = _WINDOWS.get(kind)
    if not set(roles.values()) <= set(by_name) or (
        wanted is not None and not any(w["label"] == wanted for w in variants[0]["windows"])
    ):
        return _compare(scenario, by_name, roles)
    return _KINDS[kind](scenario, by_name, roles)

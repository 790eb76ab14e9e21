"""Run a whole scenario: every variant, then the answer; the result as data and as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._answers import answer
from ._config import Scenario, ScenarioError, load_scenario, parse_rate_per_s
from ._engine import IntervalCallback, run_variant

__all__ = ["RESULT_VERSION", "SimulationResult", "run_scenario", "simulate"]

#: The version of the result's JSON layout.
RESULT_VERSION = 1


@dataclass(frozen=True)
class SimulationResult:
    """What a run measured: ``data`` is the result object (the JSON contract)."""

    data: dict[str, Any]

    @property
    def answer(self) -> str:
        return str(self.data["answer"])

    def variant(self, name: str) -> dict[str, Any]:
        for v in self.data["variants"]:
            if v["name"] == name:
                return dict(v)
        raise KeyError(f"no variant {name!r}; ran: {[v['name'] for v in self.data['variants']]}")

    def to_json(self) -> str:
        """The result as JSON text: the same bytes for the same scenario and seed."""
        return json.dumps(self.data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def run_scenario(
    scenario: Scenario,
    *,
    on_interval: IntervalCallback | None = None,
    on_variant: Callable[[str, dict[str, Any]], None] | None = None,
) -> SimulationResult:
    """Run every variant of ``scenario``, each on a fresh virtual-time loop, in order."""
    variants = []
    for variant in scenario.variants:
        measured = run_variant(scenario, variant, on_interval)
        variants.append(measured)
        if on_variant is not None:
            on_variant(variant.name, measured["summary"])
    sentence, findings = answer(scenario, variants)
    return SimulationResult(
        {
            "version": RESULT_VERSION,
            "scenario": scenario.to_json(),
            "answer": sentence,
            "findings": findings,
            "variants": variants,
        }
    )


def simulate(
    scenario: str | Path | Scenario,
    *,
    seed: int | None = None,
    duration: float | None = None,
    rate: float | None = None,
) -> SimulationResult:
    """Load (a built-in's name or a TOML path), override, run: the one-call form."""
    loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    changes: dict[str, Any] = {}
    # Scenario.replace checks the seed and the duration, as the TOML's own values are.
    if seed is not None:
        changes["seed"] = seed
    if duration is not None:
        changes["duration"] = duration
    if rate is not None:
        try:
            per_s = parse_rate_per_s("rate", rate)
        except (TypeError, ValueError) as exc:
            raise ScenarioError(str(exc)) from None
        if loaded.arrivals.kind != "poisson":
            raise ScenarioError(f"rate: {loaded.name} has closed-loop users, not a rate")
        changes["arrivals"] = loaded.arrivals.with_rate(per_s)
    if changes:
        loaded = loaded.replace(**changes)
    return run_scenario(loaded)

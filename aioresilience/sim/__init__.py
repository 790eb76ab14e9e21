"""The scenario simulator: what your retry, timeout, breaker and limit settings do to your
service and to its dependency, before production.

``python -m aioresilience simulate outage`` (or any TOML file of the same format) runs each
variant's real pipeline against a modelled dependency in virtual time, and reports the
measured answer to the scenario's question. In code::

    from aioresilience.sim import load_scenario, run_scenario

    result = run_scenario(load_scenario("outage"))
    print(result.answer)
    result.to_json()  # the figures, as the CLI's --json writes them

Nothing here needs a third-party package (the live view and the report may; extra ``sim``).
"""

from ._config import Scenario, ScenarioError, builtin_names, load_scenario
from ._models import (
    DependencyError,
    DependencyOverloaded,
    DependencyUnavailable,
    QuotaExceeded,
)
from ._run import SimulationResult, run_scenario, simulate

__all__ = [
    "DependencyError",
    "DependencyOverloaded",
    "DependencyUnavailable",
    "QuotaExceeded",
    "Scenario",
    "ScenarioError",
    "SimulationResult",
    "builtin_names",
    "load_scenario",
    "run_scenario",
    "simulate",
]

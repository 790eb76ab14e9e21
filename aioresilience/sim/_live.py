"""The terminal view of a running simulation (a stub: part B of issue 15 replaces this module).

The contract: ``with LiveView(scenario_json, quiet) as view:``; ``view.interval(row)`` once per
simulated interval per variant, ``view.variant_done(name, summary)`` when a variant ends, and
``view.summary(result)`` prints the final table. ``quiet`` prints nothing but that table.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO

__all__ = ["LiveView"]

_COLUMNS = (
    ("variant", 22),
    ("success %", 9),
    ("goodput/s", 9),
    ("p50 s", 8),
    ("p95 s", 8),
    ("p99 s", 8),
    ("dep calls", 9),
    ("ampl.", 6),
    ("refused", 8),
    ("open s", 7),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class LiveView:
    """Prints one line per finished variant, then the summary table (plain text)."""

    def __init__(
        self, scenario_json: dict[str, Any], quiet: bool, stream: TextIO | None = None
    ) -> None:
        self.scenario = scenario_json
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stdout

    def __enter__(self) -> LiveView:
        if not self.quiet:
            print(f"{self.scenario['name']}: {self.scenario['question']}", file=self.stream)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def interval(self, row: dict[str, Any]) -> None:
        """One simulated interval of one variant (the stub shows nothing per interval)."""

    def variant_done(self, name: str, summary: dict[str, Any]) -> None:
        if not self.quiet:
            print(f"  {name}: done, {summary['requests']} requests", file=self.stream)

    def summary(self, result: dict[str, Any]) -> None:
        """The table: one row per variant, then the answer."""
        out = self.stream
        print("  ".join(title.rjust(width) for title, width in _COLUMNS), file=out)
        for variant in result["variants"]:
            s = variant["summary"]
            latency = s["latency_s"]
            cells = (
                variant["name"],
                s["success_pct"],
                s["goodput_per_s"],
                latency["p50"],
                latency["p95"],
                latency["p99"],
                s["dependency_calls"],
                s["amplification"],
                sum(s["refusals"].values()),
                s["breaker_open_s"],
            )
            print(
                "  ".join(_cell(c).rjust(w) for c, (_, w) in zip(cells, _COLUMNS, strict=True)),
                file=out,
            )
        print(result["answer"], file=out)

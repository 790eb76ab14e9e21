"""The HTML report of a simulation (a stub: part B of issue 15 replaces this module).

The contract: ``write_report(result, path)`` writes one self-contained HTML file from the
result JSON (:meth:`aioresilience.sim.SimulationResult.to_json`), openable with no network.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

__all__ = ["write_report"]


def write_report(result: dict[str, Any], path: str) -> None:
    """Write the result as an HTML page: the answer, then the figures as JSON."""
    scenario = result["scenario"]
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(scenario['name'])}</title></head><body>\n"
        f"<h1>{html.escape(scenario['question'])}</h1>\n"
        f"<p>{html.escape(result['answer'])}</p>\n"
        f"<pre>{html.escape(json.dumps(result, indent=1))}</pre>\n</body></html>\n"
    )
    Path(path).write_text(page, encoding="utf-8")

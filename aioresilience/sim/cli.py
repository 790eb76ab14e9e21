"""``python -m aioresilience simulate ...`` (also the ``aioresilience`` console script).

::

    aioresilience simulate outage --seed 1 --report outage.html
    aioresilience simulate my-service.toml --duration 1h --rate 500/s --json out.json
    aioresilience simulate --list

Bad input (an unknown scenario, a key a scenario file does not know, a rate that does not
parse, a missing file) is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._config import (
    Scenario,
    ScenarioError,
    builtin_names,
    load_scenario,
    parse_duration,
    parse_rate_per_s,
)
from ._run import run_scenario

__all__ = ["main"]

#: Exit status for bad input (as argparse uses).
USAGE_ERROR = 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block) and status 2."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="aioresilience",
        description="aioresilience: see what your resilience settings do before production.",
    )
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    sim = commands.add_parser(
        "simulate",
        help="run a scenario: the real library against a modelled dependency, in virtual time",
        description=(
            "Run a scenario (a built-in's name or a TOML file): each variant's pipeline "
            "against a modelled dependency, in virtual time; print the summary table and "
            "the scenario's measured answer."
        ),
    )
    sim.add_argument("scenario", nargs="?", help="a built-in scenario's name or a .toml file")
    sim.add_argument("--list", action="store_true", help="list the built-in scenarios")
    sim.add_argument("--seed", type=int, help="the seed of every random draw (default: the file's)")
    sim.add_argument("--duration", help="simulated time, e.g. 10m, 1h, 90s")
    sim.add_argument("--rate", help="arrival rate, e.g. 200/s (open-loop arrivals)")
    sim.add_argument("--report", metavar="OUT.html", help="write the HTML report there")
    sim.add_argument("--json", metavar="OUT.json", help="write the result as JSON there")
    sim.add_argument(
        "--quiet", action="store_true", help="no live view: only the summary table at the end"
    )
    return parser


def _list() -> None:
    for name in builtin_names():
        scenario = load_scenario(name)
        print(f"{name:16} {scenario.question}")


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.scenario is None:
        raise _UsageError(
            "simulate needs a scenario (a built-in's name or a .toml file), or --list"
        )
    scenario = load_scenario(args.scenario)
    changes: dict[str, Any] = {}
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.duration is not None:
        try:
            duration = parse_duration("--duration", args.duration)
        except ValueError as exc:
            raise _UsageError(str(exc)) from None
        if duration <= 0:
            raise _UsageError(f"--duration must be > 0, got {args.duration!r}")
        changes["duration"] = duration
    if args.rate is not None:
        try:
            rate = parse_rate_per_s("--rate", args.rate)
        except (TypeError, ValueError) as exc:
            raise _UsageError(str(exc)) from None
        if scenario.arrivals.kind != "poisson":
            raise _UsageError(f"--rate: {scenario.name} has closed-loop users, not a rate")
        changes["arrivals"] = scenario.arrivals.with_rate(rate)
    return scenario.replace(**changes) if changes else scenario


def _writable(option: str, path: str | None) -> None:
    """Fail before the run, not after it, if an output cannot be written."""
    if path is None:
        return
    target = Path(path)
    parent = target.resolve().parent
    if not parent.is_dir():
        raise _UsageError(f"{option}: no such directory for {path!r}")
    if target.is_dir():
        raise _UsageError(f"{option}: {path!r} is a directory; give a file name")
    if not os.access(target if target.exists() else parent, os.W_OK):
        raise _UsageError(f"{option}: {path!r} is not writable")


def _write(option: str, path: str, text: str) -> None:
    """Write one output; a failure the checks before the run could not foresee (a full disk,
    a directory removed meanwhile) is still one line, not a traceback."""
    try:
        Path(path).write_text(text, encoding="utf-8", newline="\n")
    except OSError as exc:
        raise _UsageError(f"{option}: cannot write {path!r}: {exc.strerror or exc}") from None


#: The modules the ``sim`` extra brings (the live view and the report use them).
SIM_EXTRA = frozenset({"rich"})


def _import_live() -> Any:
    # The view imports rich only when it is built: import it here too, so that a missing
    # extra is found where _live_view() names it.
    import rich.console  # noqa: F401

    from . import _live

    return _live


def _live_view() -> Any:
    """The live view's class; a missing ``sim`` extra is a usage error naming the extra."""
    try:
        return _import_live().LiveView
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in SIM_EXTRA:
            raise
        raise _UsageError(
            f"the live view needs {missing}, which the extra 'sim' installs: "
            "pip install 'aioresilience[sim]'"
        ) from None


def _simulate(args: argparse.Namespace) -> None:
    if args.list:
        _list()
        return
    scenario = _scenario(args)
    _writable("--report", args.report)
    _writable("--json", args.json)
    LiveView = _live_view()
    with LiveView(scenario.to_json(), args.quiet) as view:
        result = run_scenario(scenario, on_interval=view.interval, on_variant=view.variant_done)
        view.summary(result.data)
    if args.json is not None:
        _write("--json", args.json, result.to_json())
        print(f"JSON written to {args.json}")
    if args.report is not None:
        from ._report import render_report

        _write("--report", args.report, render_report(result.data))
        print(f"Report written to {args.report}")


def main(argv: Sequence[str] | None = None) -> None:
    """The command line; exits with 2 and one line on stderr for bad input."""
    try:
        args = _parser().parse_args(argv)
        if args.command != "simulate":
            raise _UsageError("give a command: simulate (see --help)")
        _simulate(args)
    except (_UsageError, ScenarioError) as exc:
        print(f"aioresilience: error: {exc}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    except KeyboardInterrupt:
        print("aioresilience: interrupted", file=sys.stderr)
        sys.exit(130)

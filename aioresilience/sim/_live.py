"""The simulator's terminal view (rich, from the ``sim`` extra): while a run goes, a progress
bar and a table row per variant that follow each simulated interval; at the end, the summary
table (the report's columns, :data:`._report.SUMMARY_COLUMNS`) and the scenario's answer.

The view costs the run next to nothing: an interval only updates a few numbers, and a redraw
(a rich table: 5 to 17 ms for two to six variants) waits at least ``refresh_s`` of wall time
after the last one, and long enough that drawing takes at most ``max_share`` of the run's wall
time (2 %: each redraw's own measured cost sets the gap before the next). Rich's refresh
thread is off, so nothing renders between intervals either.

With ``quiet=True``, or when the output is not a terminal (a pipe, a CI log), there is no live
display at all: a finished variant is one plain line (none when quiet), and the summary table
is printed once.

Every string from the input (scenario and variant names come from the user's TOML) is shown as
:class:`rich.text.Text`, never parsed as rich markup.
"""

from __future__ import annotations

import io
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeGuard

from ._report import (
    MISSING,
    SUMMARY_COLUMNS,
    Column,
    format_count,
    format_number,
    format_seconds,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.text import Text

__all__ = ["LiveView"]

EXTRA_HINT = "the simulator's terminal view needs rich: install aioresilience[sim]"


@dataclass
class _Variant:
    """What the live table shows of one variant: its last few intervals and running totals."""

    recent: deque[Mapping[str, Any]]
    progress: float = 0.0
    refused: int = 0
    done: bool = False
    summary: Mapping[str, Any] = field(default_factory=dict)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _value(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    return float(value) if _is_number(value) else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


class LiveView:
    """``with LiveView(scenario, quiet) as view:`` ... ``view.interval(row)`` once per simulated
    interval per variant, ``view.variant_done(name, summary)``, then ``view.summary(result)``.

    ``console`` (a :class:`rich.console.Console`) defaults to standard output; ``refresh_s`` is
    the least wall time between two redraws, ``max_share`` the most of the wall time drawing
    may take; ``recent`` the intervals the throughput column averages over; ``clock`` the wall
    clock that paces redraws.
    """

    def __init__(
        self,
        scenario: Mapping[str, Any],
        quiet: bool,
        *,
        console: Console | None = None,
        refresh_s: float = 0.25,
        max_share: float = 0.02,
        recent: int = 5,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        try:
            from rich.console import Console
        except ImportError as missing:
            raise ImportError(EXTRA_HINT, name="rich") from missing
        if not _is_number(refresh_s) or not refresh_s >= 0:
            raise ValueError(f"refresh_s must be >= 0 seconds, got {refresh_s!r}")
        if not _is_number(max_share) or not 0 < max_share <= 1:
            raise ValueError(f"max_share must be in (0, 1], got {max_share!r}")
        if isinstance(recent, bool) or not isinstance(recent, int) or recent < 1:
            raise ValueError(f"recent must be an int >= 1, got {recent!r}")
        if console is None:
            console = Console()
            if not console.is_terminal:  # a log file: the summary's columns on one line each
                console = Console(width=max(console.width, 132))
        self.scenario = scenario
        self.quiet = quiet
        self.console = console
        self.refresh_s = refresh_s
        self.max_share = max_share
        self.redraws = 0  # how often the live table was drawn (tests check the pacing)
        self._recent = recent
        self._clock = clock
        self._variants: dict[str, _Variant] = {}
        self._live: Live | None = None
        self._next_draw = -float("inf")
        interval = _value(scenario, "interval_s")
        self._interval_s = interval if interval and interval > 0 else 1.0
        self._duration_s = _value(scenario, "duration_s")

    def _length(self, row: Mapping[str, Any]) -> float:
        """The length of ``row``'s interval: the last one of a run that is not a whole number
        of intervals ends with the run, so it is shorter."""
        t, duration = _value(row, "t"), self._duration_s
        if t is not None and duration is not None and 0 < duration - t < self._interval_s:
            return duration - t
        return self._interval_s

    @property
    def live(self) -> bool:
        """Whether the view redraws as the run goes (a terminal, and not quiet)."""
        return self._live is not None

    def __enter__(self) -> LiveView:
        if not self.quiet and self.console.is_terminal:
            from rich.live import Live

            # auto_refresh off: redraws happen in interval(), paced, never from
            # a thread competing with the run; transient: the summary table replaces it.
            self._live = Live(console=self.console, auto_refresh=False, transient=True)
            self._live.start()
            self._redraw(self._clock())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- what the run reports -------------------------------------------------------------------

    def _variant(self, name: str) -> _Variant:
        found = self._variants.get(name)
        if found is None:
            found = self._variants[name] = _Variant(deque(maxlen=self._recent))
        return found

    def interval(self, row: Mapping[str, Any]) -> None:
        """One simulated interval of one variant: ``variant``, ``index``, ``progress`` (0..1)
        and that interval's value of each series key."""
        variant = self._variant(str(row.get("variant", "")))
        variant.recent.append(row)
        variant.progress = min(max(_value(row, "progress") or 0.0, 0.0), 1.0)
        variant.refused += int(_value(row, "refused") or 0)
        self._maybe_redraw()

    def _maybe_redraw(self) -> None:
        if self._live is not None:
            now = self._clock()
            if now >= self._next_draw:
                self._redraw(now)

    def variant_done(self, name: str, summary: Mapping[str, Any]) -> None:
        variant = self._variant(name)
        variant.done, variant.progress, variant.summary = True, 1.0, summary
        if self._live is not None:
            self._maybe_redraw()  # paced too: six variants finishing must not cost six draws
        elif not self.quiet:
            from rich.text import Text

            latency = summary.get("latency_s")
            p99 = latency.get("p99") if isinstance(latency, Mapping) else None
            self.console.print(
                Text.assemble(
                    (name, "bold"),
                    f" done: {format_number(summary.get('success_pct'))} % succeeded, "
                    f"p99 {format_seconds(p99)}, "
                    f"{format_count(summary.get('dependency_calls'))} dependency calls",
                )
            )

    def _redraw(self, now: float) -> None:
        assert self._live is not None
        self._live.update(self._render(), refresh=True)
        self.redraws += 1
        cost = self._clock() - now
        self._next_draw = now + max(self.refresh_s, cost / self.max_share)

    # -- drawing --------------------------------------------------------------------------------

    def _title(self) -> Text:
        from rich.text import Text

        title = Text.assemble(("simulate ", "dim"), (str(self.scenario.get("name", "")), "bold"))
        question = self.scenario.get("question")
        if question:
            title.append(f"  {question}", "italic")
        return title

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        # Headers may wrap (at spaces), cells are short: the table fits 100 columns.
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("variant", no_wrap=True, max_width=18)
        table.add_column("progress", no_wrap=True)
        table.add_column("", justify="right", no_wrap=True)  # the progress in per cent
        for header in ("req/s", "p99", "dep calls/s", "dep in flight", "dep state", "breaker"):
            table.add_column(header, justify="right")
        table.add_column("refused", justify="right")
        for name, variant in self._variants.items():
            last = variant.recent[-1] if variant.recent else {}
            throughput = _mean(
                [v for r in variant.recent if (v := _value(r, "throughput_per_s")) is not None]
            )
            calls = _value(last, "dependency_calls")
            table.add_row(
                Text(name, style="bold green" if variant.done else "bold"),
                ProgressBar(total=1.0, completed=variant.progress, width=12),
                f"{variant.progress * 100:.0f}%",
                format_number(throughput),
                format_seconds(last.get("p99_s")),
                format_number(None if calls is None else calls / self._length(last)),
                format_count(last.get("dependency_in_flight_max")),
                self._health(_value(last, "dependency_healthy")),
                self._breaker(_value(last, "breaker_open_fraction")),
                format_count(variant.refused),
            )
        title = self._title()
        title.no_wrap, title.overflow = True, "ellipsis"  # one line: the live area stays small
        return Group(title, table)

    @staticmethod
    def _health(healthy: float | None) -> RenderableType:
        from rich.text import Text

        if healthy is None:
            return Text(MISSING)
        return Text("healthy") if healthy >= 0.5 else Text("DOWN", style="bold red")

    @staticmethod
    def _breaker(open_fraction: float | None) -> RenderableType:
        from rich.text import Text

        if open_fraction is None:
            return Text(MISSING)
        if open_fraction <= 0:
            return Text("closed")
        if open_fraction >= 1:
            return Text("open", style="bold red")
        return Text(f"open {open_fraction * 100:.0f}%", style="yellow")

    def summary(self, result: Mapping[str, Any]) -> None:
        """Print the summary table, a row per variant, and the scenario's answer. The counts by
        kind (refusals, failures) follow the table, a line per variant: in a table they would
        squeeze the numbers out of a 100-column terminal."""
        from rich import box
        from rich.cells import cell_len
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        self._stop()  # the live table gives way to the final one
        numbers = [c for c in SUMMARY_COLUMNS if c.numeric]
        kinds = [c for c in SUMMARY_COLUMNS if not c.numeric]
        variants = result.get("variants")
        variants = (
            [v for v in variants if isinstance(v, Mapping)] if isinstance(variants, list) else []
        )
        names = [str(v.get("name", "")) for v in variants]
        summaries = [v.get("summary") for v in variants]
        summaries = [s if isinstance(s, Mapping) else {} for s in summaries]

        def table_of(columns: Sequence[Column], title: Text | None) -> Table:
            table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
            # A name of up to 16 characters on one line (rich would wrap it first); a longer
            # one wraps rather than push the numbers off the screen.
            table.add_column("variant", min_width=min(max(map(len, names), default=7), 16))
            for column in columns:
                # A number is never cut short ("68,5…"): too wide, the table splits instead.
                table.add_column(column.terminal_header, justify="right", no_wrap=True)
            for name, summary in zip(names, summaries, strict=True):
                table.add_row(
                    Text(name, style="bold"), *(Text(column.cell(summary)) for column in columns)
                )
            return table

        # As many tables as it takes, each as wide as the terminal at most: the numbers in
        # their columns' order, split where they would not fit.
        width = self.console.width

        def fits(columns: Sequence[Column]) -> bool:
            # Drawn where nothing squeezes it (rich's own measure clamps to the width).
            drawn = io.StringIO()
            Console(file=drawn, width=1 << 12, color_system=None).print(table_of(columns, None))
            return max(map(cell_len, drawn.getvalue().splitlines())) <= width

        groups: list[list[Column]] = [[]]
        for column in numbers:
            group = groups[-1]
            if group and not fits([*group, column]):
                groups.append([column])
            else:
                group.append(column)
        for i, group in enumerate(groups):
            self.console.print(table_of(group, self._title() if i == 0 else None))
        lines = []
        for name, summary in zip(names, summaries, strict=True):
            line = Text.assemble((name, "bold"))
            for column in kinds:
                line.append(f"  {column.header}: ", "dim")
                line.append(column.cell(summary))
            lines.append(line)
        for line in lines:
            self.console.print(line)
        answer = result.get("answer")
        if answer:
            self.console.print(Text.assemble(("Answer: ", "bold"), str(answer)))

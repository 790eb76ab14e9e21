"""The simulator's HTML report: one self-contained file that opens offline.

The charts are inline SVG drawn here, so the report needs no plotting dependency, no script and
no network (no CDN, no web font): a browser shows everything from the file alone. Every number
is written with a fixed precision and every collection in input order, so the same result gives
byte-identical HTML. Every string that comes from the input (scenario and variant names come
from the user's TOML) is escaped before it reaches the markup, and the result itself is embedded
as JSON (``<script type="application/json" id="simulation-data">``) so the figures travel with
the report.

The summary columns (:data:`SUMMARY_COLUMNS`) and the number formats live here once; the live
terminal view prints the same table from them.

Series: ``t[i]`` is the start of interval ``i`` (``interval_s`` long); counts are per interval
and are drawn per second; a percentile of an empty interval is null and leaves a gap.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SUMMARY_COLUMNS", "Column", "render_report", "write_report"]

# Okabe-Ito: told apart with every common colour-vision deficiency, in this order (one per
# variant, up to six; a seventh would reuse the first).
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")
DASHES = {"solid": "", "dashed": "7 4", "dotted": "2 3"}
MISSING = "\u2013"  # an en dash: no value (an empty interval's percentile, no refusals)

# -- numbers as people read them ----------------------------------------------------------------


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, not a number, or not finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def format_number(value: Any, decimals: int = 1) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    number = _finite(value)
    return MISSING if number is None else f"{number:,.{decimals}f}"


def format_count(value: Any) -> str:
    number = _finite(value)
    return MISSING if number is None else f"{round(number):,}"


def format_seconds(value: Any) -> str:
    """A latency in the unit that keeps three significant digits readable."""
    number = _finite(value)
    if number is None:
        return MISSING
    if number < 1e-3:
        return f"{number * 1e6:.0f} µs"
    if number < 1:
        ms = number * 1e3
        return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    return f"{number:.2f} s"


def format_duration(value: Any) -> str:
    """A span of simulated time (the breaker's open time): seconds, minutes past two."""
    number = _finite(value)
    if number is None:
        return MISSING
    return f"{number:.1f} s" if number < 120 else f"{number / 60:.1f} min"


KINDS_SEPARATOR = "; "  # not a comma: the counts have thousands separators


def format_kinds(counts: Any) -> str:
    """``{"RateLimited": 12, "CircuitOpen": 3}`` as ``RateLimited 12; CircuitOpen 3``: the most
    frequent first, ties by name (a stable order whatever the input's)."""
    if not isinstance(counts, Mapping) or not counts:
        return MISSING
    items = sorted(counts.items(), key=lambda kv: (-(_finite(kv[1]) or 0), str(kv[0])))
    return KINDS_SEPARATOR.join(f"{kind} {format_count(n)}" for kind, n in items)


@dataclass(frozen=True)
class Column:
    """One column of the summary table: its header and how a variant's summary fills it."""

    header: str
    cell: Callable[[Mapping[str, Any]], str]
    numeric: bool = True
    short: str = ""  # the header in a terminal: a 100-column one fits the table in two lines

    @property
    def terminal_header(self) -> str:
        return self.short or self.header


def _latency(which: str) -> Callable[[Mapping[str, Any]], str]:
    def cell(summary: Mapping[str, Any]) -> str:
        latency = summary.get("latency_s")
        return format_seconds(latency.get(which) if isinstance(latency, Mapping) else None)

    return cell


def _amplification(summary: Mapping[str, Any]) -> str:
    ratio = summary.get("amplification")
    text = format_number(ratio, 2)
    return f"{text}\u00d7" if _finite(ratio) is not None else text  # the multiplication sign


SUMMARY_COLUMNS: tuple[Column, ...] = (
    Column("success %", lambda s: format_number(s.get("success_pct"), 1)),
    Column("goodput/s", lambda s: format_number(s.get("goodput_per_s"), 1)),
    Column("p50", _latency("p50")),
    Column("p95", _latency("p95")),
    Column("p99", _latency("p99")),
    Column(
        "dependency calls", lambda s: format_count(s.get("dependency_calls")), short="dep\ncalls"
    ),
    Column("amplification", _amplification, short="amplif."),
    Column("refusals", lambda s: format_kinds(s.get("refusals")), numeric=False),
    Column("failures", lambda s: format_kinds(s.get("failures")), numeric=False),
    # Neither succeeded nor failed nor refused: a fallback's or chaos's value, or still running
    # when the drain ended. Without it the percentages of a row do not add up to 100.
    Column(
        "other",
        lambda s: format_kinds(
            {k: s.get(k) for k in ("substituted", "unfinished") if _finite(s.get(k))}
        ),
        numeric=False,
    ),
    Column(
        "breaker open", lambda s: format_duration(s.get("breaker_open_s")), short="breaker\nopen"
    ),
)


def describe(value: Any) -> str:
    """A JSON-safe value (a strategy's description, the arrivals model) in one line: a mapping
    as ``key=value, ...`` with its ``kind`` first, a list joined by commas."""
    if isinstance(value, Mapping):
        kind = value.get("kind")
        rest = ", ".join(f"{k}={describe(v)}" for k, v in value.items() if k != "kind")
        if kind is None:
            return rest
        return f"{describe(kind)}({rest})" if rest else describe(kind)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(describe(v) for v in value) + "]"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


# -- axes ---------------------------------------------------------------------------------------


def nice_ticks(top: float, count: int = 5) -> tuple[float, list[float]]:
    """Ticks from 0 up to a round ceiling of ``top``: (ceiling, ticks), about ``count`` steps
    of 1, 2 or 5 times a power of ten (Heckbert, "Nice numbers for graph labels", Graphics
    Gems 1990)."""
    if not top > 0:
        top = 1.0
    raw = top / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    steps = math.ceil(top / step - 1e-9)
    return steps * step, [i * step for i in range(steps + 1)]


def tick_label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return f"{value:,.{decimals}f}"


@dataclass(frozen=True)
class Line:
    """One line per variant in a chart: the series key, how an interval's value becomes the
    plotted one, and its dash in the legend."""

    key: str
    label: str
    dash: str = "solid"
    per_second: bool = False  # a count per interval, drawn as a rate


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    unit: str
    lines: tuple[Line, ...]
    seconds: bool = False  # values in seconds: drawn in ms when the top is under 2 s
    fixed_top: float | None = None
    percent: bool = False  # a 0..1 fraction drawn as 0..100 %
    all_zero: str = ""  # what a chart whose every value is 0 means (no variant has a limiter)


CHARTS: tuple[Chart, ...] = (
    Chart(
        "throughput",
        "Throughput: calls that succeeded, and the load offered",
        "requests/s",
        (
            Line("throughput_per_s", "succeeded"),
            Line("offered", "offered", "dashed", per_second=True),
        ),
    ),
    Chart(
        "outcomes",
        "Failed and refused calls",
        "requests/s",
        (
            Line("failed", "failed", per_second=True),
            Line("refused", "refused", "dashed", per_second=True),
        ),
    ),
    Chart(
        "latency",
        "Latency percentiles",
        "s",
        (Line("p99_s", "p99"), Line("p95_s", "p95", "dashed"), Line("p50_s", "p50", "dotted")),
        seconds=True,
    ),
    Chart(
        "dependency-calls",
        "Calls reaching the dependency",
        "calls/s",
        (Line("dependency_calls", "calls", per_second=True),),
    ),
    Chart(
        "dependency-in-flight",
        "Dependency concurrency",
        "calls in flight (max per interval)",
        (Line("dependency_in_flight_max", "in flight"),),
    ),
    Chart(
        "breaker",
        "Circuit breaker open",
        "% of interval",
        (Line("breaker_open_fraction", "open"),),
        fixed_top=100.0,
        percent=True,
    ),
    Chart(
        "limiter",
        "Rate limiter admissions",
        "admitted/s",
        (Line("limiter_admitted", "admitted", per_second=True),),
        all_zero="no variant admits calls through a rate limiter",
    ),
)

WIDTH, HEIGHT = 960, 250
LEFT, RIGHT, TOP, BOTTOM = 72, 16, 14, 42
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True)
class TimeAxis:
    start: float
    end: float
    interval: float
    minutes: bool  # tick labels in minutes for runs of three minutes or more

    def x(self, t: float) -> float:
        return LEFT + (t - self.start) / (self.end - self.start) * PLOT_W

    def length(self, t: float) -> float:
        """The length of the interval that starts at ``t``: the last one of a run that is not
        a whole number of intervals ends with the run, so it is shorter."""
        left = self.end - t
        return left if 0 < left < self.interval else self.interval

    def svg(self) -> str:
        scale = 60.0 if self.minutes else 1.0
        span = (self.end - self.start) / scale
        _, ticks = nice_ticks(span, 8)
        step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
        parts = [
            f'<g class="axis x-axis"><line x1="{LEFT}" y1="{TOP + PLOT_H}" '
            f'x2="{LEFT + PLOT_W}" y2="{TOP + PLOT_H}"/>'
        ]
        for tick in ticks:
            if tick > span + 1e-9:
                break
            x = self.x(self.start + tick * scale)
            parts.append(
                f'<line x1="{x:.1f}" y1="{TOP + PLOT_H}" x2="{x:.1f}" y2="{TOP + PLOT_H + 5}"/>'
                f'<text x="{x:.1f}" y="{TOP + PLOT_H + 18}" text-anchor="middle">'
                f"{tick_label(tick, step)}</text>"
            )
        unit = "min" if self.minutes else "s"
        parts.append(
            f'<text class="axis-title" x="{LEFT + PLOT_W / 2:.1f}" y="{HEIGHT - 4}" '
            f'text-anchor="middle">simulated time ({unit})</text></g>'
        )
        return "".join(parts)


def _numbers(series: Mapping[str, Any], key: str) -> list[float | None] | None:
    values = series.get(key)
    if not isinstance(values, list):
        return None
    return [_finite(v) for v in values]


def _interval(result: Mapping[str, Any]) -> float:
    scenario = result.get("scenario")
    interval = _finite(scenario.get("interval_s")) if isinstance(scenario, Mapping) else None
    if interval and interval > 0:
        return interval
    for variant in _variants(result):  # no interval given: the spacing of the samples
        t = _numbers(_series(variant), "t") or []
        known = [v for v in t if v is not None]
        if len(known) > 1 and known[1] > known[0]:
            return known[1] - known[0]
    return 1.0


def _variants(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    variants = result.get("variants")
    return [v for v in variants if isinstance(v, Mapping)] if isinstance(variants, list) else []


def _series(variant: Mapping[str, Any]) -> Mapping[str, Any]:
    series = variant.get("series")
    return series if isinstance(series, Mapping) else {}


def _time_axis(result: Mapping[str, Any]) -> TimeAxis:
    interval = _interval(result)
    times = [
        t
        for variant in _variants(result)
        for t in (_numbers(_series(variant), "t") or [])
        if t is not None
    ]
    start = min(times, default=0.0)
    last = max(times, default=0.0)
    end = last + interval
    scenario = result.get("scenario")
    duration = _finite(scenario.get("duration_s")) if isinstance(scenario, Mapping) else None
    if duration is not None and last < duration < end:
        end = duration  # the run ended within its last interval
    return TimeAxis(start, end, interval, minutes=end - start >= 180)


def _unhealthy_spans(result: Mapping[str, Any], interval: float) -> list[tuple[float, float]]:
    """The intervals in which the dependency was unhealthy in any variant, merged into spans
    (each variant's own are drawn in the health strip)."""
    spans = sorted(span for v in _variants(result) for span in _spans(v, interval))
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1] + 1e-9:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _spans(variant: Mapping[str, Any], interval: float) -> Iterator[tuple[float, float]]:
    series = _series(variant)
    t = _numbers(series, "t") or []
    healthy = _numbers(series, "dependency_healthy") or []
    span: tuple[float, float] | None = None  # the unhealthy span being extended
    for when, ok in zip(t, healthy, strict=False):
        if when is None:
            continue
        if ok is not None and ok < 0.5:
            span = (span[0] if span else when, when + interval)
        elif span is not None:
            yield span
            span = None
    if span is not None:
        yield span


def _shading(spans: Sequence[tuple[float, float]], axis: TimeAxis, top: int, height: int) -> str:
    return "".join(
        f'<rect class="unhealthy" x="{axis.x(a):.1f}" y="{top}" '
        f'width="{max(axis.x(min(b, axis.end)) - axis.x(a), 0.5):.1f}" height="{height}"/>'
        for a, b in spans
    )


def _path(points: Sequence[tuple[float, float | None]]) -> str:
    """An SVG path through the points; a None value ends the stroke, so an interval without a
    value (a percentile of an empty interval) is a gap, never a dip to zero."""
    commands: list[str] = []
    pen_down = False
    for x, y in points:
        if y is None:
            pen_down = False
            continue
        commands.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
        pen_down = True
    return "".join(commands)


def _chart_svg(chart: Chart, result: Mapping[str, Any], axis: TimeAxis, shade: str) -> str:
    variants = _variants(result)
    # Per variant and line: the plotted values, in the chart's unit.
    plotted: list[tuple[int, Line, list[tuple[float, float | None]]]] = []
    for index, variant in enumerate(variants):
        series = _series(variant)
        t = _numbers(series, "t")
        if t is None:
            continue
        for line in chart.lines:
            values = _numbers(series, line.key)
            if values is None:
                continue
            scale = 100.0 if chart.percent else 1.0
            # Each value is drawn at the middle of its interval; a count per interval is drawn
            # per second of that interval (the last may be shorter than the others).
            points = [
                (
                    axis.x(when + axis.length(when) / 2),
                    None
                    if v is None
                    else v * scale / (axis.length(when) if line.per_second else 1.0),
                )
                for when, v in zip(t, values, strict=False)
                if when is not None
            ]
            plotted.append((index, line, points))
    peak = max((y for *_, points in plotted for _, y in points if y is not None), default=0.0)
    unit = chart.unit
    factor = 1.0
    if chart.seconds and peak < 2:
        unit, factor = "ms", 1e3
    top, ticks = nice_ticks(chart.fixed_top or peak * factor * 1.05)
    step = ticks[1] - ticks[0]

    def y_of(value: float) -> float:
        return TOP + PLOT_H - value * factor / top * PLOT_H

    title = html.escape(chart.title)
    parts = [
        f'<svg class="chart" id="chart-{chart.id}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}">',
        shade,
        '<g class="grid axis y-axis">',
    ]
    for tick in ticks:
        y = TOP + PLOT_H - tick / top * PLOT_H
        parts.append(
            f'<line class="gridline" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + PLOT_W}" y2="{y:.1f}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{tick_label(tick, step)}</text>"
        )
    parts.append(
        f'<text class="axis-title" transform="translate(14 {TOP + PLOT_H / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{html.escape(unit)}</text></g>'
    )
    parts.append(axis.svg())
    note = "not recorded in this run" if not plotted else chart.all_zero if peak == 0 else ""
    if note:
        parts.append(
            f'<text class="no-data" x="{LEFT + PLOT_W / 2:.1f}" y="{TOP + PLOT_H / 2:.1f}" '
            f'text-anchor="middle">{html.escape(note)}</text>'
        )
    for index, line, points in plotted:
        d = _path([(x, None if y is None else y_of(y)) for x, y in points])
        dash = DASHES[line.dash]
        label = html.escape(f"{variants[index].get('name', index)}: {line.label}")
        parts.append(
            f'<path class="series" d="{d}" stroke="{PALETTE[index % len(PALETTE)]}"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + f"><title>{label}</title></path>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _health_svg(result: Mapping[str, Any], axis: TimeAxis) -> str:
    """One row per variant: a bar across the run, red where its dependency was unhealthy."""
    variants = _variants(result)
    row = 30
    height = TOP + row * max(len(variants), 1) + BOTTOM
    parts = [
        f'<svg class="chart" id="chart-dependency-health" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="Dependency health">'
    ]
    for index, variant in enumerate(variants):
        y = TOP + index * row
        parts.append(
            f'<text x="{LEFT}" y="{y + 11}">{html.escape(str(variant.get("name", index)))}</text>'
            f'<rect class="healthy" x="{LEFT}" y="{y + 15}" width="{PLOT_W}" height="10" '
            f'fill="{PALETTE[index % len(PALETTE)]}"/>'
            + _shading(list(_spans(variant, axis.interval)), axis, y + 15, 10)
        )
    # The axis sits under the rows: shift it by the difference from a line chart's height.
    parts.append(f'<g transform="translate(0 {height - HEIGHT})">{axis.svg()}</g></svg>')
    return "".join(parts)


def _legend(chart: Chart, result: Mapping[str, Any]) -> str:
    items = [
        f'<span class="key"><svg width="22" height="10"><line x1="0" y1="5" x2="22" y2="5" '
        f'stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="3"/></svg>'
        f"{html.escape(str(v.get('name', i)))}</span>"
        for i, v in enumerate(_variants(result))
    ]
    if len(chart.lines) > 1:
        items.extend(
            '<span class="key"><svg width="22" height="10"><line x1="0" y1="5" x2="22" y2="5" '
            'stroke="#444" stroke-width="2"'
            + (f' stroke-dasharray="{DASHES[line.dash]}"' if DASHES[line.dash] else "")
            + f"/></svg>{html.escape(line.label)}</span>"
            for line in chart.lines
        )
    items.append(
        '<span class="key"><span class="swatch unhealthy"></span>dependency unhealthy</span>'
    )
    return f'<div class="legend">{"".join(items)}</div>'


# -- the page -----------------------------------------------------------------------------------

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#1b1f24;background:#fff;margin:0 auto;max-width:1120px;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
.question{color:#57606a;margin:0 0 12px}
.answer{font-size:18px;border-left:5px solid #0072b2;background:#f1f7fb;padding:10px 14px;
margin:0 0 14px}
.facts{color:#57606a;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:5px 6px;border-bottom:1px solid #d0d7de;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
td.variant{white-space:nowrap}td.kinds{font-size:12px;white-space:nowrap}
.wide{overflow-x:auto}
ul.variants{list-style:none;padding:0;font-size:13px}ul.variants li{margin:6px 0}
figure{margin:18px 0}figcaption{font-weight:600}
.legend{font-size:12px;color:#444;margin:4px 0}.key{margin-right:14px;white-space:nowrap}
.key svg{vertical-align:middle;margin-right:4px}
svg.chart{display:block;width:100%;height:auto;font-size:12px}
svg.chart text{fill:#444}svg.chart .axis-title{fill:#1b1f24}
.axis line{stroke:#8c959f}.gridline{stroke:#eaeef2}
.series{fill:none;stroke-width:2;stroke-linejoin:round;stroke-linecap:round}
.unhealthy{fill:#d1242f;fill-opacity:.13}.swatch.unhealthy{background:#d1242f;opacity:.3}
rect.healthy{fill-opacity:.25}svg#chart-dependency-health rect.unhealthy{fill-opacity:.85}
details{margin:6px 0;font-size:13px}code{font-size:12px}
"""


def _summary_table(result: Mapping[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(c.header)}</th>" for c in SUMMARY_COLUMNS)
    rows = []
    for index, variant in enumerate(_variants(result)):
        summary = variant.get("summary")
        summary = summary if isinstance(summary, Mapping) else {}
        cells = "".join(
            f'<td class="num">{html.escape(c.cell(summary))}</td>'
            if c.numeric
            else '<td class="kinds">'  # a kind per line: the names are long, the table is not
            + "<br>".join(html.escape(k) for k in c.cell(summary).split(KINDS_SEPARATOR))
            + "</td>"
            for c in SUMMARY_COLUMNS
        )
        rows.append(
            f'<tr><td class="variant"><span class="swatch" '
            f'style="background:{PALETTE[index % len(PALETTE)]}"></span>'
            f"<strong>{html.escape(str(variant.get('name', index)))}</strong></td>{cells}</tr>"
        )
    return (
        f'<div class="wide"><table id="summary"><thead><tr><th>variant</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _variant_list(result: Mapping[str, Any]) -> str:
    """Each variant's description and pipeline, outermost strategy first (under the table:
    in it, a paragraph of description would squeeze the numbers)."""
    items = []
    for index, variant in enumerate(_variants(result)):
        pipeline = variant.get("pipeline")
        steps = pipeline if isinstance(pipeline, list) else []
        chain = " → ".join(html.escape(describe(step)) for step in steps) or "no strategies"
        description = variant.get("description")
        items.append(
            f'<li><span class="swatch" style="background:{PALETTE[index % len(PALETTE)]}">'
            f"</span><strong>{html.escape(str(variant.get('name', index)))}</strong>"
            + (f": {html.escape(str(description))}" if description else "")
            + f'<br><code class="pipeline">{chain}</code></li>'
        )
    return f'<ul class="variants">{"".join(items)}</ul>'


def _facts(scenario: Mapping[str, Any]) -> str:
    facts = []
    for key, label in (("seed", "seed"), ("duration_s", "duration"), ("interval_s", "interval")):
        value = scenario.get(key)
        if value is not None:
            shown = format_duration(value) if key != "seed" else str(value)
            facts.append(f"{label} {html.escape(shown)}")
    if scenario.get("source"):
        facts.append(f"from {html.escape(str(scenario['source']))}")
    models = "".join(
        f"<details><summary>{key}</summary><code>{html.escape(describe(scenario[key]))}</code>"
        "</details>"
        for key in ("arrivals", "dependency")
        if scenario.get(key) is not None
    )
    return f'<p class="facts">{" · ".join(facts)}</p>{models}'


def _json_safe(value: Any) -> Any:
    """The result as strict JSON (a browser's JSON.parse rejects NaN and Infinity): a value
    that is not a finite number becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _embedded_json(result: Mapping[str, Any]) -> str:
    text = json.dumps(_json_safe(result), ensure_ascii=False, separators=(",", ":"))
    # Inside <script> only "</script" (and "<!--") would end or change the block; escaping
    # every <, > and & as a JSON \\u escape rules them out and parses back to the same text.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_report(result: Mapping[str, Any]) -> str:
    """The report for a simulation ``result`` (the simulator's JSON document) as HTML."""
    scenario = result.get("scenario")
    scenario = scenario if isinstance(scenario, Mapping) else {}
    name = html.escape(str(scenario.get("name", "simulation")))
    axis = _time_axis(result)
    shade = _shading(_unhealthy_spans(result, axis.interval), axis, TOP, PLOT_H)
    figures = [
        f"<figure><figcaption>{html.escape(chart.title)}</figcaption>{_legend(chart, result)}"
        f"{_chart_svg(chart, result, axis, shade)}</figure>"
        for chart in CHARTS
    ]
    figures.insert(
        0,
        "<figure><figcaption>Dependency health</figcaption>"
        '<div class="legend">each variant\'s dependency; red: unhealthy</div>'
        f"{_health_svg(result, axis)}</figure>",
    )
    question = scenario.get("question")
    answer = result.get("answer")
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{name}: aioresilience simulation</title><style>{STYLE}</style></head>"
            f"<body><header><h1>{name}</h1>",
            f'<p class="question">{html.escape(str(question))}</p>' if question else "",
            f'<p class="answer" id="answer">{html.escape(str(answer))}</p>' if answer else "",
            _facts(scenario),
            "</header><main><h2>Summary</h2>",
            _summary_table(result),
            _variant_list(result),
            "<h2>Over time</h2>",
            *figures,
            '</main><footer class="facts">Made by <code>python -m aioresilience simulate'
            "</code>; the figures are embedded below as JSON (script#simulation-data)."
            "</footer>",
            '<script type="application/json" id="simulation-data">',
            _embedded_json(result),
            "</script></body></html>\n",
        ]
    )


def write_report(result: Mapping[str, Any], path: str) -> None:
    """Write the report for ``result`` to ``path`` (UTF-8, ``\\n`` line ends on every OS, so
    the same result gives the same bytes)."""
    Path(path).write_text(render_report(result), encoding="utf-8", newline="\n")

"""The simulator's HTML report (aioresilience.sim._report): what it shows, that it is the same
bytes for the same result, that input strings stay text, and that it opens in a real headless
Chromium with every chart drawn (tests/browser.py), offline, without a console error.
"""

from __future__ import annotations

import copy
import html
import json
import math
import re
import struct
import sys
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import browser as browser_module
import pytest
from browser import Browser, main, require_chromium
from sim_sample import OUTAGE, sample_result

from aioresilience.sim._report import (
    CHARTS,
    LEFT,
    PLOT_H,
    PLOT_W,
    SUMMARY_COLUMNS,
    TOP,
    format_kinds,
    format_seconds,
    nice_ticks,
    render_report,
    write_report,
)

ARTIFACTS = Path(__file__).parent / "artifacts"
HOSTILE = "<script>alert(1)</script>"


class Elements(HTMLParser):
    """The report's elements as (tag, attributes, text inside), in document order."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[int] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}, []))
        self._open.append(len(self.found) - 1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}, []))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self.found[self._open.pop()][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for index in self._open:
            self.found[index][2].append(data)

    def select(self, tag: str, **attrs: str) -> Iterator[tuple[dict[str, str], str]]:
        for name, attributes, text in self.found:
            if name == tag and all(
                value in attributes.get(key.rstrip("_"), "").split() or attributes.get(key) == value
                for key, value in attrs.items()
            ):
                yield attributes, "".join(text)


def chart(page: str, chart_id: str) -> str:
    found = re.search(rf'<svg class="chart" id="chart-{chart_id}".*?</svg>', page)
    assert found, f"no chart {chart_id}"
    return found.group(0)


def series_paths(svg: str) -> list[str]:
    return [attributes["d"] for attributes, _ in Elements(svg).select("path", class_="series")]


def points(d: str) -> list[list[tuple[float, float]]]:
    """A path's strokes (each begins with M) as lists of (x, y)."""
    strokes: list[list[tuple[float, float]]] = []
    for command, x, y in re.findall(r"([ML])([\d.]+),([\d.]+)", d):
        if command == "M":
            strokes.append([])
        strokes[-1].append((float(x), float(y)))
    return strokes


def y_tick_labels(svg: str) -> list[str]:
    return [
        text
        for attributes, text in Elements(svg).select("text")
        if attributes.get("text-anchor") == "end"
    ]


# -- what it shows ------------------------------------------------------------------------------


def test_the_answer_comes_first_then_the_summary_then_the_charts() -> None:
    result = sample_result()
    page = render_report(result)
    answer = page.index(html.escape(result["answer"]))
    assert answer < page.index('<table id="summary"') < page.index('<svg class="chart"')
    assert page.index(html.escape(result["scenario"]["question"])) < answer
    assert "seed 7" in page and "duration 2.0 min" in page


def test_the_summary_table_has_a_row_per_variant_in_the_agreed_columns() -> None:
    result = sample_result(variants=1)
    result["variants"][0]["summary"] = {
        "success_pct": 99.54,
        "goodput_per_s": 1234.56,
        "latency_s": {"p50": 0.02134, "p95": None, "p99": 1.9, "mean": 0.2},
        "dependency_calls": 53249,
        "amplification": 2.2169,
        "refusals": {"RateLimited": 12, "CircuitOpenError": 900},
        "failures": {},
        "breaker_open_s": 150,
    }
    page = render_report(result)
    assert '<td class="kinds">CircuitOpenError 900<br>RateLimited 12</td>' in page
    table = Elements(page)
    headers = [text for _, text in table.select("th")]
    assert headers == ["variant", *(c.header for c in SUMMARY_COLUMNS)]
    assert headers[1:] == [
        "success %",
        "goodput/s",
        "p50",
        "p95",
        "p99",
        "dependency calls",
        "amplification",
        "refusals",
        "failures",
        "other",
        "breaker open",
    ]
    cells = [text for _, text in table.select("td")]
    assert cells == [
        "naive retry",
        "99.5",
        "1,234.6",
        "21.3 ms",
        "\u2013",  # no p95: a dash, never 0
        "1.90 s",
        "53,249",
        "2.22\u00d7",
        "CircuitOpenError 900RateLimited 12",  # a kind per line (<br> between)
        "\u2013",
        "\u2013",  # nothing substituted or unfinished
        "2.5 min",
    ]


def test_each_variant_is_described_with_its_pipeline_outermost_first() -> None:
    items = [text for _, text in Elements(render_report(sample_result())).select("li")]
    assert items == [
        "naive retry: variant 0: naive retry"
        "timeout(name=attempt, seconds=2) → retry(name=retry, attempts=4)",
        "budget + breaker: variant 1: budget + breaker"
        "timeout(name=attempt, seconds=2) → retry(name=retry, attempts=4)",
    ]


def test_number_formats() -> None:
    assert [format_seconds(s) for s in (0.0005, 0.00512, 0.0512, 0.512, 12.5)] == [
        "500 µs",
        "5.12 ms",
        "51.2 ms",
        "512 ms",
        "12.50 s",
    ]
    assert format_seconds(None) == format_seconds(math.nan) == "\u2013"
    assert format_kinds({"b": 3, "a": 3, "c": 7}) == "c 7; a 3; b 3"


@pytest.mark.parametrize(
    ("top", "ceiling", "ticks"),
    [
        (1.0, 1.0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (97, 100, [0, 20, 40, 60, 80, 100]),
        (1234, 1500, [0, 500, 1000, 1500]),
        (0, 1.0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),  # an all-zero chart still has an axis
    ],
)
def test_nice_ticks(top: float, ceiling: float, ticks: list[float]) -> None:
    got_ceiling, got_ticks = nice_ticks(top)
    assert got_ceiling == pytest.approx(ceiling)
    assert got_ticks == pytest.approx(ticks)


def test_every_chart_overlays_every_variant_with_its_lines() -> None:
    page = render_report(sample_result(variants=3))
    for spec in CHARTS:
        paths = series_paths(chart(page, spec.id))
        assert len(paths) == 3 * len(spec.lines), spec.id
        assert all(points(d) for d in paths), spec.id
    names = [v["name"] for v in sample_result(variants=3)["variants"]]
    legends = [text for _, text in Elements(page).select("div", class_="legend")]
    assert len(legends) == 1 + len(CHARTS)
    assert all(all(name in legend for name in names) for legend in legends[1:])


def test_an_empty_interval_is_a_gap_not_a_zero() -> None:
    """Variant 1 has four intervals with no completions (null percentiles): its latency lines
    break there; variant 0 has none and is one stroke of 120 points."""
    paths = series_paths(chart(render_report(sample_result()), "latency"))
    naive_p99, budget_p99 = paths[0], paths[3]
    assert [len(s) for s in points(naive_p99)] == [120]
    assert [len(s) for s in points(budget_p99)] == [42, 120 - 42 - 4]


def test_values_land_where_the_axis_says() -> None:
    """The breaker's 0.75 open fraction is drawn at 75 % of a 0..100 axis, at the middle of
    its interval; counts per interval are drawn per second (interval 2 s: 200 calls/s, not
    400 per interval, so the throughput axis tops out at 250)."""
    result = sample_result(interval_s=2.0, intervals=60)
    page = render_report(result)
    breaker = chart(page, "breaker")
    assert y_tick_labels(breaker)[-1] == "100"
    budget = points(series_paths(breaker)[1])[0]
    open_at = [p for p in budget if p[1] == pytest.approx(TOP + PLOT_H * 0.25, abs=0.05)]
    first_open_x = LEFT + (OUTAGE[0] + 1.0) / 120 * PLOT_W  # interval [40, 42): drawn at 41
    assert open_at[0][0] == pytest.approx(first_open_x, abs=0.05)
    assert y_tick_labels(chart(page, "throughput"))[-1] == "250"


def test_the_last_short_interval_is_drawn_per_second_of_its_own_length() -> None:
    """A 90 s run in intervals of 60 s: the last interval is 30 s long. Its 3,000 offered
    calls at the 100/s of the first interval's 6,000 were drawn as 50/s (divided by 60 s,
    beside the succeeded line at 100/s that the engine had already divided by 30 s), at 90 s
    and on an axis running to 120 s."""
    result = sample_result(variants=1, intervals=2, interval_s=60.0)
    result["scenario"]["duration_s"] = 90.0
    series = result["variants"][0]["series"]
    series["offered"] = [6000, 3000]
    series["throughput_per_s"] = [100.0, 100.0]
    series["dependency_healthy"] = [1, 0]
    page = render_report(result)
    succeeded, offered = (points(d)[0] for d in series_paths(chart(page, "throughput")))
    assert [y for _, y in offered] == [y for _, y in succeeded]
    assert [x for x, _ in offered] == pytest.approx(
        [LEFT + t / 90 * PLOT_W for t in (30, 75)], abs=0.05
    )
    shaded = next(Elements(chart(page, "throughput")).select("rect", class_="unhealthy"))[0]
    assert float(shaded["x"]) + float(shaded["width"]) == pytest.approx(LEFT + PLOT_W, abs=0.1)


def test_unhealthy_intervals_are_shaded_in_every_chart() -> None:
    """Shading: the union over variants (variant 0's dependency is down 40..90 s); the health
    strip shows each variant's own span."""
    page = render_report(sample_result())
    for spec in CHARTS:
        shaded = list(Elements(chart(page, spec.id)).select("rect", class_="unhealthy"))
        assert len(shaded) == 1, spec.id
        x, width = float(shaded[0][0]["x"]), float(shaded[0][0]["width"])
        assert x == pytest.approx(LEFT + 40 / 120 * PLOT_W, abs=0.05)
        assert x + width == pytest.approx(LEFT + 90 / 120 * PLOT_W, abs=0.1)
    strip = list(Elements(chart(page, "dependency-health")).select("rect", class_="unhealthy"))
    ends = [float(a["x"]) + float(a["width"]) for a, _ in strip]
    assert ends == pytest.approx([LEFT + s / 120 * PLOT_W for s in (90, 75)], abs=0.1)


@pytest.mark.parametrize("variants", [1, 6])
def test_any_variant_count_renders(variants: int) -> None:
    page = render_report(sample_result(variants=variants))
    swatches = {
        a["style"] for a, _ in Elements(page).select("span", class_="swatch") if "style" in a
    }
    assert len(swatches) == variants  # one colour each
    assert len(series_paths(chart(page, "throughput"))) == 2 * variants


def test_a_chart_of_zeros_says_what_that_means() -> None:
    result = sample_result()
    assert "no variant admits" not in chart(render_report(result), "limiter")
    for variant in result["variants"]:
        variant["series"]["limiter_admitted"] = [0] * 120
    limiter = chart(render_report(result), "limiter")
    assert "no variant admits calls through a rate limiter" in limiter
    assert len(series_paths(limiter)) == 2  # the zeros are still drawn


def test_missing_series_and_extra_keys_are_tolerated() -> None:
    result = sample_result()
    result["surprise"] = {"from": "a newer engine"}
    for variant in result["variants"]:
        del variant["series"]["limiter_admitted"]
    page = render_report(result)
    assert "not recorded in this run" in chart(page, "limiter")
    assert not series_paths(chart(page, "limiter"))


def test_a_result_with_nothing_in_it_still_renders() -> None:
    """No scenario, no variants, or a variant without series: a page that says so, no error."""
    for result in ({}, {"variants": [{"name": "x", "series": None, "summary": None}]}):
        page = render_report(result)
        assert page.count('<svg class="chart"') == 1 + len(CHARTS)
        assert "not recorded in this run" in chart(page, "throughput")


# -- same bytes, no network, escaped ------------------------------------------------------------


def test_the_same_result_gives_byte_identical_html(tmp_path: Path) -> None:
    first, second = tmp_path / "a.html", tmp_path / "b.html"
    write_report(sample_result(), str(first))
    write_report(copy.deepcopy(sample_result()), str(second))
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() == render_report(sample_result()).encode()
    assert b"\r" not in first.read_bytes()


def test_the_report_refers_to_nothing_outside_itself() -> None:
    page = render_report(sample_result())
    markup = page[: page.index('<script type="application/json"')]
    for reference in ("://", "src=", "href=", "url(", "@import", "<link", "@font-face"):
        assert reference not in markup, reference
    assert page.count("<script") == 1  # the data block; no code at all


def data_block(page: str) -> Any:
    found = re.search(
        r'<script type="application/json" id="simulation-data">(.*?)</script>', page, re.DOTALL
    )
    assert found
    return json.loads(found.group(1))


def test_the_figures_travel_with_the_report_as_json() -> None:
    result = sample_result()
    assert data_block(render_report(result)) == result
    result["variants"][0]["summary"]["amplification"] = math.inf  # nothing reached it: no ratio
    page = render_report(result)
    assert data_block(page)["variants"][0]["summary"]["amplification"] is None  # strict JSON
    assert '<td class="num">∞</td>' in page


def hostile_result() -> dict[str, Any]:
    result = sample_result(names=["naive retry", HOSTILE])
    result["scenario"]["name"] = 'A & B <i>"quoted"</i>'
    result["scenario"]["question"] = "</p><img src=x onerror=alert(2)>"
    result["answer"] = "</script><script>alert(3)</script>"
    result["variants"][1]["description"] = "<b>bold?</b>"
    result["variants"][1]["pipeline"] = [{"kind": "<retry>", "name": "'x'"}]
    result["variants"][1]["summary"]["refusals"] = {"<Refused>": 3}
    return result


def test_every_input_string_is_escaped() -> None:
    page = render_report(hostile_result())
    for raw in (HOSTILE, "<i>", "<img", "<b>", "<retry>", "<Refused>", "</script><script>"):
        assert raw not in page, raw
    assert page.count("<script") == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert data_block(page)["variants"][1]["name"] == HOSTILE  # the JSON keeps it, inertly


# -- in a real browser --------------------------------------------------------------------------


def test_without_chromium_a_local_run_skips_and_ci_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser_module.shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium not found; install Debian's"):
        require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser tests"):
        require_chromium()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser(require_chromium()) as started:
        yield started


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the image data): a blank page has a handful."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        if data[at + 4 : at + 8] == b"IDAT":
            chunks.append(data[at + 8 : at + 8 + length])
        at += 12 + length
    return width, height, len(set(zlib.decompress(b"".join(chunks))))


CHART_SIZES = """[...document.querySelectorAll('svg.chart')].map(svg => {
    const box = svg.getBoundingClientRect();
    const drawn = [...svg.querySelectorAll('path.series')].filter(p => {
        const b = p.getBBox(); return p.getTotalLength() > 0 && (b.width > 0 || b.height > 0);
    });
    return {id: svg.id, width: box.width, height: box.height, paths: drawn.length};
})"""


def test_the_report_opens_offline_in_chromium_with_every_chart_drawn(
    browser: Browser, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    write_report(sample_result(variants=3), str(report))
    page = browser.open(report.as_uri())
    charts = browser.evaluate(CHART_SIZES)
    assert [c["id"] for c in charts] == [
        "chart-dependency-health",
        *(f"chart-{spec.id}" for spec in CHARTS),
    ]
    for drawn in charts:
        assert drawn["width"] > 0 and drawn["height"] > 0, drawn
    lines = {spec.id: len(spec.lines) for spec in CHARTS}
    for drawn in charts[1:]:
        assert drawn["paths"] == 3 * lines[drawn["id"].removeprefix("chart-")], drawn
    shot = browser.screenshot(
        ARTIFACTS / f"sim-report-{sys.version_info[0]}.{sys.version_info[1]}.png"
    )
    print(f"screenshot: {shot}")
    width, height, distinct = png_facts(shot.read_bytes())
    assert width == browser.width and height > 2000  # the whole page, not one window
    assert distinct > 50
    assert page.errors == []
    assert page.requests == [report.as_uri()]  # nothing but the file itself


def test_a_hostile_variant_name_shows_as_text_in_chromium(browser: Browser, tmp_path: Path) -> None:
    report = tmp_path / "hostile.html"
    write_report(hostile_result(), str(report))
    page = browser.open(report.as_uri())
    assert browser.evaluate("document.querySelectorAll('script, img, i, b').length") == 1
    assert browser.evaluate(
        f"document.querySelector('#summary').innerText.includes({json.dumps(HOSTILE)})"
    )
    assert browser.evaluate("document.title").startswith('A & B <i>"quoted"</i>')
    parsed = browser.evaluate("JSON.parse(document.getElementById('simulation-data').textContent)")
    assert parsed["variants"][1]["name"] == HOSTILE
    assert page.errors == []


def test_the_screenshot_command_makes_the_readme_picture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_chromium()
    report, picture = tmp_path / "report.html", tmp_path / "docs" / "simulator-report.png"
    write_report(sample_result(), str(report))
    assert main(["screenshot", str(report), str(picture), "--width", "900"]) == 0
    assert f"wrote {picture}" in capsys.readouterr().out
    assert png_facts(picture.read_bytes())[0] == 900


def test_the_simulators_own_report_opens_in_chromium_with_its_charts_drawn(
    browser: Browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: the real simulator (a short outage run, seeded) writes the report that the
    browser opens; every chart has a size and a line per variant, and the page says its answer."""
    from aioresilience.sim import cli

    report = tmp_path / "outage.html"
    cli.main(
        [
            "simulate",
            "outage",
            "--seed",
            "1",
            "--duration",
            "2m",
            "--quiet",
            "--report",
            str(report),
        ]
    )
    assert str(report) in capsys.readouterr().out
    page = browser.open(report.as_uri())
    charts = browser.evaluate(CHART_SIZES)
    assert len(charts) == 1 + len(CHARTS)
    for drawn in charts:
        assert drawn["width"] > 0 and drawn["height"] > 0, drawn
    throughput = next(c for c in charts if c["id"] == "chart-throughput")
    assert throughput["paths"] >= 2, throughput  # both variants plotted
    embedded = browser.evaluate(
        "JSON.parse(document.getElementById('simulation-data').textContent)"
    )
    assert [v["name"] for v in embedded["variants"]] == ["naive retry", "budget + breaker"]
    assert browser.evaluate(f"document.body.innerText.includes({json.dumps(embedded['answer'])})")
    assert page.errors == []
    assert page.requests == [report.as_uri()]

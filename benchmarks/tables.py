"""The benchmarks' results as data, and their Markdown tables.

Every group of ``run.py`` returns a list of *sections*: plain dicts (JSON as they are) with a
``kind`` naming their shape, a ``title`` and, for what runs on an event loop, a ``loop``.
``run.py`` prints them with :func:`render` and saves them in ``benchmarks/results/X.Y.json``;
``report.py`` renders the same sections into RESULTS.md and reads the numbers it compares
from them, so the printed and the recorded tables cannot drift apart.

Kinds and their rows:

- ``cases``: ``{"case", "ns", "ratio"}``: median ns/op and its ratio to the bare await of the
  same rounds (harness.measure);
- ``pairs``: ``{"case", "median", "p10", "p90"}``: extra cost of a variant measured in
  adjacent pairs (harness.paired_overhead), with ``pairs`` and ``calls`` on the section;
- ``accuracy``: ``{"limiter", "admitted", "ideal", "error_pct", "busiest_100ms",
  "late_p50_ms", "late_p99_ms"}``;
- ``burst``: ``{"limiter", "admitted"}``;
- ``keyed``: ``{"limiter", "first_ns", "repeat_ns", "bytes_per_key"}``, with ``keys`` and
  ``reclaim`` (``{"live_before", "live_after_idle", "period_s"}`` or a ``"skipped"`` reason);
- ``redis``: ``{"case", "p50_us", "x_raw", "per_second", "x_limits"}``;
- ``redis_shared``: one row ``{"asked", "limit", "admitted", "per_second"}``;
- ``sim``: ``{"case", "requests", "median_s", "per_second", "x_engine"}``: one simulator
  variant's wall time (median of ``repeats``), and its ratio to the engine alone;
- ``sim_memory``: ``{"minutes", "requests", "peak_kib"}``;
- ``client``: ``{"case", "us_per_request", "overhead_us", "overhead_spread"}`` (bench_client:
  client CPU per request, the overhead over the same library's bare client), with
  ``requests``, ``rounds``, ``versions``, ``missing`` and ``targets``;
- ``client_fault``: ``{"case", "requests_per_call", "first_success_s", "failed_calls"}``
  (bench_client's dead host), with ``calls``, ``spacing_s``, ``break_s`` and ``targets``;
- ``note``: a ``text`` printed as it is.
"""

from __future__ import annotations

from typing import Any

Section = dict[str, Any]


def _heading(section: Section, level: str = "###") -> str:
    loop = section.get("loop")
    return f"{level} {section['title']}" + (f" ({loop})" if loop else "")


def _table(heading: str, header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    return [
        heading,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render(section: Section) -> str:
    """The Markdown ``run.py`` prints for one section (and RESULTS.md shows)."""
    kind, rows = section["kind"], section.get("rows", [])
    if kind == "cases":
        lines = _table(
            _heading(section),
            ["case", "ns/op (median)", "x bare await"],
            ["---", "---:", "---:"],
            [[r["case"], f"{r['ns']:,.0f}", f"{r['ratio']:.2f}"] for r in rows],
        )
    elif kind == "pairs":
        lines = [
            f"{section['title']}, extra cost measured in {section['pairs']} adjacent pairs "
            f"({section['calls']:,} calls each; median, and 10th-90th percentile of the pairs) "
            f"({section['loop']}):",
            "",
            *(
                f"- {r['case']}: {r['median']:+.1%} ({r['p10']:+.1%} .. {r['p90']:+.1%})"
                for r in rows
            ),
        ]
    elif kind == "accuracy":
        lines = _table(
            _heading(section, "####"),
            [
                "limiter",
                "admitted",
                "ideal",
                "error %",
                "busiest 100 ms after 1 s",
                "late p50 ms",
                "late p99 ms",
            ],
            ["---", *["---:"] * 6],
            [
                [
                    r["limiter"],
                    f"{r['admitted']:,.0f}",
                    f"{r['ideal']:,.0f}",
                    f"{r['error_pct']:+.2f}",
                    f"{r['busiest_100ms']:.0f}",
                    f"{r['late_p50_ms']:.2f}",
                    f"{r['late_p99_ms']:.2f}",
                ]
                for r in rows
            ],
        )
    elif kind == "burst":
        lines = _table(
            _heading(section),
            ["limiter", "admitted (bound: 10)"],
            ["---", "---:"],
            [[r["limiter"], str(r["admitted"])] for r in rows],
        )
    elif kind == "keyed":
        lines = _table(
            _heading(section),
            ["limiter", "ns first hit", "ns repeat hit (median of 3 passes)", "bytes per live key"],
            ["---", "---:", "---:", "---:"],
            [
                [
                    r["limiter"],
                    f"{r['first_ns']:,.0f}",
                    f"{r['repeat_ns']:,.0f}",
                    f"{r['bytes_per_key']:,.0f}",
                ]
                for r in rows
            ],
        )
        reclaim = section.get("reclaim") or {}
        if "skipped" in reclaim:
            lines += ["", f"Idle keys reclaimed: not measured ({reclaim['skipped']})."]
        elif reclaim:
            lines += [
                "",
                f"Idle keys reclaimed (virtual time): {reclaim['live_before']:,.0f} live keys, "
                f"{reclaim['live_after_idle']:,.0f} after two idle periods of "
                f"{reclaim['period_s']:g} s.",
            ]
    elif kind == "redis":
        lines = _table(
            _heading(section),
            ["case", "p50 µs, 1 task", "x raw EVALSHA", "decisions/s, 64 tasks", "x best limits"],
            ["---", "---:", "---:", "---:", "---:"],
            [
                [
                    r["case"],
                    f"{r['p50_us']:,.0f}",
                    _ratio(r["x_raw"]),
                    f"{r['per_second']:,.0f}",
                    _ratio(r["x_limits"]),
                ]
                for r in rows
            ],
        )
    elif kind == "redis_shared":
        (r,) = rows
        lines = _table(
            _heading(section),
            ["asked", "limit", "admitted", "exact", "aggregate decisions/s"],
            ["---:", "---:", "---:", "---", "---:"],
            [
                [
                    f"{r['asked']:,}",
                    f"{r['limit']:,}",
                    f"{r['admitted']:,}",
                    "yes" if r["admitted"] == r["limit"] else "NO",
                    f"{r['per_second']:,.0f}",
                ]
            ],
        )
    elif kind == "web":
        lines = _web(section)
    elif kind == "client":
        lines = _client(section)
    elif kind == "client_fault":
        lines = _client_fault(section)
    elif kind == "overload":
        lines = _table(
            f"### {section['title']}",
            ["run", "unloaded p99 ms", "unprotected p99 ms", "adaptive p50 / p99 ms",
             "p99 / unloaded (<= 2)", "goodput / capacity (>= 0.9)", "503s, p50 / p99 ms"],
            ["---", "---:", "---:", "---:", "---:", "---:", "---:"],
            [
                [
                    r["case"],
                    f"{r['unloaded_p99'] * 1e3:.0f}",
                    f"{r['unprotected_p99'] * 1e3:.0f}",
                    f"{r['adaptive_p50'] * 1e3:.0f} / {r['adaptive_p99'] * 1e3:.0f}",
                    f"{r['p99_ratio']:.2f}",
                    f"{r['goodput_ratio']:.2f}",
                    f"{r['refused']}, {r['refused_p50'] * 1e3:.1f} / {r['refused_p99'] * 1e3:.1f}",
                ]
                for r in rows
            ],
        )  # fmt: skip
    elif kind == "sim":
        lines = _table(
            _heading(section),
            ["variant", "requests", "wall s (median)", "simulated requests/s", "x engine alone"],
            ["---", "---:", "---:", "---:", "---:"],
            [
                [
                    r["case"],
                    f"{r['requests']:,}",
                    f"{r['median_s']:.2f}",
                    f"{r['per_second']:,.0f}",
                    f"{r['x_engine']:.2f}",
                ]
                for r in rows
            ],
        )
        lines += ["", f"Medians of {section['repeats']} alternating runs each."]
    elif kind == "sim_memory":
        lines = _table(
            _heading(section),
            ["simulated minutes", "requests", "tracemalloc peak KiB"],
            ["---:", "---:", "---:"],
            [[str(r["minutes"]), f"{r['requests']:,}", f"{r['peak_kib']:,.0f}"] for r in rows],
        )
    elif kind == "note":
        lines = [section["text"]]
    else:
        raise ValueError(f"unknown section kind {kind!r} in {section.get('title')!r}")
    return "\n".join(lines) + "\n"


def _web(section: Section) -> list[str]:
    """bench_web's table: server CPU per request, the overhead over the unprotected server."""
    rows = []
    for r in section["rows"]:
        over = ""
        if "overhead_us" in r:
            low, high = r["overhead_spread"]
            over = f"{r['overhead_us']:+.1f} ({low:+.1f} .. {high:+.1f})"
        rows.append([r["case"], f"{r['us_per_request']:.1f}", over])
    rows += [[label, f"not measured: {why}", ""] for label, why in section["missing"].items()]
    versions = ", ".join(f"{k} {v}" for k, v in section["servers"].items() if v)
    return [
        *_table(
            f"### {section['title']} ({section['requests']:,} requests per case per round, "
            f"{section['rounds']} interleaved rounds, {section['concurrency']} keep-alive "
            "connections; medians)",
            ["case", "server CPU us/request", "overhead us (min .. max over rounds)"],
            ["---", "---:", "---:"],
            rows,
        ),
        "",
        *(f"- {line}" for line in section.get("targets", [])),
        "",
        f"Servers: {versions}.",
    ]


def _client(section: Section) -> list[str]:
    """bench_client's CPU table: client CPU per request, the overhead over the bare client."""
    rows = []
    for r in section["rows"]:
        over = ""
        if "overhead_us" in r:
            low, high = r["overhead_spread"]
            over = f"{r['overhead_us']:+.1f} ({low:+.1f} .. {high:+.1f})"
        rows.append([r["case"], f"{r['us_per_request']:.1f}", over])
    rows += [[label, f"not measured: {why}", ""] for label, why in section["missing"].items()]
    versions = ", ".join(f"{k} {v}" for k, v in section["versions"].items() if v)
    return [
        *_table(
            f"### {section['title']} ({section['requests']:,} requests per case per round "
            f"on loopback, {section['local_requests']:,} with no network, "
            f"{section['rounds']} interleaved rounds; medians)",
            ["case", "client CPU us/request", "overhead us (min .. max over rounds)"],
            ["---", "---:", "---:"],
            rows,
        ),
        "",
        *(f"- {line}" for line in section.get("targets", [])),
        "",
        f"Clients and peers: {versions}.",
    ]


def _client_fault(section: Section) -> list[str]:
    """bench_client's dead host: amplification, recovery, failed calls."""
    rows = [
        [
            r["case"],
            f"{r['requests_per_call']:.2f}",
            "never" if r["first_success_s"] is None else f"{r['first_success_s']:.3f}",
            str(r["failed_calls"]),
        ]
        for r in section["rows"]
    ]
    return [
        *_table(
            f"### {section['title']} ({section['calls']} calls, one every "
            f"{section['spacing_s'] * 1000:.0f} ms; ours: a {section['break_s']} s break)",
            ["case", "requests per call to the dead host", "first success after recovery s",
             "calls failed"],
            ["---", "---:", "---:", "---:"],
            rows,
        ),
        "",
        *(f"- {line}" for line in section.get("targets", [])),
    ]  # fmt: skip


def find(sections: list[Section], title: str, loop: str | None = None) -> Section | None:
    """The section of that title (and loop), if the run has it."""
    for section in sections:
        if section.get("title") == title and section.get("loop") == loop:
            return section
    return None

"""The simulator's terminal view (aioresilience.sim._live.LiveView): the live table follows the
intervals, its redraws are paced by wall time (injected clock: no sleeping), quiet and
non-terminal runs print only plain lines and the summary, input is never read as markup, a
missing rich names the extra; and the whole view renders in a real 100x30 pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sim_sample import sample_result

from aioresilience.sim._live import LiveView

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][AB012]|\x1b[=>78]")
HEADERS = ("success", "goodput/s", "p50", "p95", "p99", "amplif.")


def rows(result: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows the engine gives LiveView.interval, variant after variant."""
    for variant in result["variants"]:
        series = variant["series"]
        n = len(series["t"])
        for i in range(n):
            row = {k: values[i] for k, values in series.items()}
            yield (
                variant["name"],
                {"variant": variant["name"], "index": i, "progress": (i + 1) / n, **row},
            )


class FakeClock:
    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def terminal(width: int = 100) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=width, height=30), out


def drive(view: LiveView, result: dict[str, Any]) -> None:
    with view:
        last = None
        for name, row in rows(result):
            if last is not None and name != last:
                view.variant_done(
                    last, next(v for v in result["variants"] if v["name"] == last)["summary"]
                )
            view.interval(row)
            last = name
        assert last is not None
        view.variant_done(last, result["variants"][-1]["summary"])
        view.summary(result)


def test_redraws_are_paced_by_wall_time_not_by_intervals() -> None:
    """240 intervals, each 0.01 s of wall time on the clock, and a redraw that the clock sees
    cost 0.01 s too (one more reading). With max_share=1 only refresh_s paces: a redraw per
    0.25 s, about one per 24 intervals, not 240. With the default share (2 %), a redraw that
    costs 0.01 s waits 0.5 s for the next: half as many. Each count adds the first draw; a
    finished variant is drawn only when a redraw is due (paced like an interval)."""
    result = sample_result(variants=2)
    paced = LiveView(
        result["scenario"], False, console=terminal()[0], max_share=1, clock=FakeClock(0.01)
    )
    drive(paced, result)
    assert 1 + 9 <= paced.redraws <= 1 + 10
    shared = LiveView(result["scenario"], False, console=terminal()[0], clock=FakeClock(0.01))
    drive(shared, result)
    assert 1 + 4 <= shared.redraws <= 1 + 5
    short = sample_result(variants=2, intervals=15)
    fast = LiveView(
        short["scenario"], quiet=False, console=terminal()[0], refresh_s=0, clock=FakeClock(0)
    )
    drive(fast, short)
    assert fast.redraws == 1 + 30 + 2  # refresh_s=0: every interval (what the pty test uses)


def test_the_live_table_shows_recent_throughput_p99_dependency_breaker_refusals() -> None:
    """Stopped right after variant 1's 45th interval (the outage: breaker open 75 %, the
    dependency down, no completions so no p99), the table shows exactly that."""
    result = sample_result(variants=2)
    console, out = terminal(width=120)
    view = LiveView(
        result["scenario"], quiet=False, console=console, refresh_s=0, clock=FakeClock(0)
    )
    with view:
        for name, row in rows(result):
            view.interval(row)
            if name == "budget + breaker" and row["index"] == 44:
                break
        screen = ANSI.sub("", out.getvalue()).split("simulate outage")[-1]
    lines = screen.splitlines()
    header = next(line for line in lines if "req/s" in line)
    for column in ("variant", "progress", "req/s", "p99", "dep", "breaker", "refused"):
        assert column in header
    budget = next(line for line in lines if line.startswith("budget + breaker"))
    series = result["variants"][1]["series"]
    recent = sum(series["throughput_per_s"][40:45]) / 5
    refused = sum(series["refused"][:45])
    assert budget.split()[4:] == [
        "38%",  # 45 of 120 intervals
        f"{recent:,.1f}",
        "\u2013",  # an interval with no completions has no p99
        f"{series['dependency_calls'][44]:,.1f}",
        "50",
        "DOWN",
        "open",
        "75%",
        f"{refused:,}",
    ]
    naive = next(line for line in lines if line.startswith("naive retry"))
    assert naive.split()[3:5] == [
        "100%",
        f"{sum(result['variants'][0]['series']['throughput_per_s'][-5:]) / 5:,.1f}",
    ]


def test_the_last_short_interval_shows_its_calls_per_second_of_its_own_length() -> None:
    """A 90 s run in intervals of 60 s: the last interval is 30 s long, and its 3,000
    dependency calls are 100/s (they read 50.0, divided by 60 s)."""
    result = sample_result(variants=1, intervals=2, interval_s=60.0)
    result["scenario"]["duration_s"] = 90.0
    result["variants"][0]["series"]["dependency_calls"] = [6000, 3000]
    console, out = terminal(width=120)
    view = LiveView(
        result["scenario"], quiet=False, console=console, refresh_s=0, clock=FakeClock(0)
    )
    with view:
        for _, row in rows(result):
            view.interval(row)
        screen = ANSI.sub("", out.getvalue()).split("simulate outage")[-1]
    line = next(line for line in screen.splitlines() if line.startswith("naive retry"))
    assert line.split()[7] == "100.0"  # (p99 "3.12 s" is two words)


def test_the_summary_table_has_the_agreed_columns_and_the_answer() -> None:
    result = sample_result(variants=2)
    console, out = terminal()
    drive(LiveView(result["scenario"], quiet=True, console=console), result)
    text = ANSI.sub("", out.getvalue())
    header = next(line for line in text.splitlines() if "p50" in line)
    for column in ("variant", *HEADERS):
        assert column in text, column
    assert header.index("p50") < header.index("p95") < header.index("p99")
    budget = next(line for line in text.splitlines() if line.strip().startswith("budget + b"))
    assert budget.split()[3:] == [
        "69.2",
        "138.6",
        "21.0",
        "ms",
        "350",
        "ms",
        "1.90",
        "s",
        "17,942",
        "0.75\u00d7",
        "22.5",
        "s",
    ]
    words = " ".join(text.split())  # the line may wrap at 100 columns
    assert (
        "budget + breaker refusals: CircuitOpenError 900; RateLimited 12 failures: "
        "TimeoutExceeded 4,000; DependencyError 120"
    ) in words
    assert "Answer: The budgeted pipeline" in words


@pytest.mark.parametrize("width", [50, 80])
def test_a_narrow_terminal_splits_the_summary_never_cuts_a_number(width: int) -> None:
    result = sample_result(variants=2)
    console, out = terminal(width)
    drive(LiveView(result["scenario"], quiet=True, console=console), result)
    text = ANSI.sub("", out.getvalue())
    assert "\u2026" not in text  # rich's ellipsis: a cell cut short
    assert max(map(len, text.splitlines())) <= width
    headers = [line for line in text.splitlines() if line.lstrip().startswith("variant")]
    assert len(headers) >= 2  # split into tables, each with the variant's name first
    for value in ("53,249", "17,942", "2.22\u00d7", "0.75\u00d7", "22.5 s", "138.6", "1.90 s"):
        assert value in text, value


def test_quiet_prints_nothing_until_the_summary() -> None:
    result = sample_result(variants=2)
    console, out = terminal()
    view = LiveView(result["scenario"], quiet=True, console=console)
    with view:
        assert not view.live
        for _, row in rows(result):
            view.interval(row)
        view.variant_done("naive retry", result["variants"][0]["summary"])
        assert out.getvalue() == ""
        view.summary(result)
    assert view.redraws == 0
    assert "success %" in out.getvalue()


def test_not_a_terminal_no_redraws_a_plain_line_per_variant_then_the_table() -> None:
    result = sample_result(variants=2)
    out = io.StringIO()
    view = LiveView(result["scenario"], quiet=False, console=Console(file=out, width=132))
    drive(view, result)
    text = out.getvalue()
    assert view.redraws == 0 and "\x1b" not in text  # no cursor movement, no colour
    lines = text.splitlines()
    assert lines[0] == "naive retry done: 60.4 % succeeded, p99 1.90 s, 53,249 dependency calls"
    assert lines[1].startswith("budget + breaker done:")
    assert any("success %" in line for line in lines[2:])


def test_an_interrupted_run_gives_the_terminal_back() -> None:
    """A run stopped by an error (or Ctrl-C) leaves the with block: the live display stops and
    shows the cursor again (rich hides it while drawing)."""
    result = sample_result(variants=1, intervals=10)
    console, out = terminal()
    view = LiveView(result["scenario"], quiet=False, console=console, refresh_s=0)
    with pytest.raises(KeyboardInterrupt), view:
        for _, row in rows(result):
            view.interval(row)
        raise KeyboardInterrupt
    assert not view.live
    drawn = out.getvalue()
    assert drawn.rindex("\x1b[?25h") > drawn.rindex("\x1b[?25l")  # the cursor shown again


def test_names_are_text_never_markup() -> None:
    result = sample_result(
        variants=2, intervals=10, names=["[bold red]x[/bold red]", "[link=http://e]y[/]"]
    )
    result["scenario"]["name"] = "[blink]scenario[/blink]"
    console, out = terminal(width=120)
    drive(
        LiveView(result["scenario"], quiet=False, console=console, refresh_s=0, clock=FakeClock(0)),
        result,
    )
    text = ANSI.sub("", out.getvalue())
    for shown in ("[bold red]x[/bold red]", "[link=http://e]y[/]", "[blink]scenario[/blink]"):
        assert shown in text


def test_bad_options_fail_at_construction_naming_them() -> None:
    with pytest.raises(ValueError, match=r"refresh_s must be >= 0 seconds, got -1"):
        LiveView({}, quiet=False, refresh_s=-1)
    with pytest.raises(ValueError, match=r"max_share must be in \(0, 1\], got 0"):
        LiveView({}, quiet=False, max_share=0)
    with pytest.raises(ValueError, match=r"refresh_s must be >= 0 seconds, got '1s'"):
        LiveView({}, quiet=False, refresh_s="1s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"recent must be an int >= 1, got 0"):
        LiveView({}, quiet=False, recent=0)


def test_without_rich_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "rich" or m.startswith("rich.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"install aioresilience\[sim\]") as missing:
        LiveView({}, quiet=True)
    assert missing.value.name == "rich"


# -- in a real pseudo-terminal ------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from sim_sample import sample_result
    from test_sim_live import drive
    from aioresilience.sim._live import LiveView

    result = sample_result(variants=3, intervals=50)
    view = LiveView(result["scenario"], quiet=False, refresh_s=0)
    assert view.console.is_terminal, "the pty is not seen as a terminal"
    drive(view, result)
    print("size", view.console.size.width, view.console.size.height, "redraws", view.redraws)
    """
)


def test_the_view_renders_in_a_100x30_pseudo_terminal() -> None:
    """The child's stdout and stderr are the pty's slave end, sized 100x30 (TIOCSWINSZ): rich
    sees a terminal of that size, draws the live table on every interval and the summary; the
    output read back from the master end has no traceback and no line wider than 100."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "TERM")}
    env["TERM"] = "xterm-256color"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=str(Path(__file__).parent))],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, "the child wrote nothing for 30 s"
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child exited and closed the slave end
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        status = child.wait(timeout=30)
    output = b"".join(chunks).decode(errors="replace")
    assert "Traceback" not in output, output
    assert status == 0, output
    text = ANSI.sub("", output)
    assert "size 100 30 redraws" in text
    assert "\x1b[" in output  # drawn as a terminal: colours and cursor movement
    assert "dep calls/s" in text  # the live table's header
    assert all(h in text for h in HEADERS)  # the summary's
    visible = [line for line in re.split(r"\r\n|\r|\n", text) if line]
    assert max(len(line) for line in visible) <= 100

"""The command line, as a person runs it: subprocesses, exit statuses, stderr, files."""

from __future__ import annotations

import html
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from aioresilience.sim import builtin_names, load_scenario, run_scenario

EVERYTHING = Path(__file__).parent / "sim" / "everything.toml"


def simulate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aioresilience", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def assert_one_line_error(run: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("aioresilience: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert run.stdout == ""


def test_unknown_scenario() -> None:
    assert_one_line_error(simulate("outgae"), "unknown scenario 'outgae'", "did you mean 'outage'")


def test_a_key_that_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text(EVERYTHING.read_text().replace("half_open_max_calls", "half_open_max_cals"))
    hooks = EVERYTHING.with_name("sim_hooks.py")  # the callables it names sit beside it
    (tmp_path / hooks.name).write_text(hooks.read_text())
    line = next(
        n
        for n, text in enumerate(path.read_text().splitlines(), start=1)
        if "half_open_max_cals" in text
    )
    assert_one_line_error(
        simulate(str(path)), f"typo.toml:{line}:", "half_open_max_cals", "did you mean"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("outage", "--rate", "lots"), "--rate must look like '100/minute'"),
        (("outage", "--duration", "soon"), "--duration must be a duration like"),
        (("outage", "--duration", "0s"), "--duration must be > 0"),
        (("outage", "--seed", "x"), "argument --seed: invalid int value: 'x'"),
        (("missing.toml",), "missing.toml: no such file"),
        ((), "simulate needs a scenario"),
        (("outage", "--json", "/no/such/dir/out.json"), "--json: no such directory"),
        (("outage", "--json", "/"), "--json: '/' is a directory"),
        (("outage", "--report", "."), "--report: '.' is a directory"),
    ],
)
def test_bad_input_is_one_line_and_status_2(args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(simulate(*args), fragment)


def test_no_command() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "aioresilience"], capture_output=True, text=True, timeout=60
    )
    assert_one_line_error(run, "give a command: simulate")


def test_list_names_each_builtin_on_one_line() -> None:
    run = simulate("--list")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[0] for line in lines] == builtin_names()
    for line in lines:
        assert line.rstrip().endswith("?")


def test_json_through_the_cli_is_the_bytes_of_a_run_in_process(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    report = tmp_path / "out.html"
    run = simulate(
        str(EVERYTHING),
        "--seed", "11",
        "--duration", "20s",
        "--json", str(out),
        "--report", str(report),
        "--quiet",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    expected = run_scenario(load_scenario(EVERYTHING).replace(seed=11, duration=20.0))
    assert out.read_text(encoding="utf-8") == expected.to_json()
    assert f"JSON written to {out}" in run.stdout
    assert f"Report written to {report}" in run.stdout
    assert expected.answer in run.stdout  # the summary table ends with the answer
    page = report.read_text(encoding="utf-8")
    assert page.lower().startswith("<!doctype html>")
    assert html.escape(expected.answer) in page  # the report leads with the same answer


def test_rate_override_reaches_the_arrivals(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    run = simulate(str(EVERYTHING), "--rate", "30/s", "--json", str(out), "--quiet")
    assert run.returncode == 0, run.stderr
    expected = run_scenario(
        load_scenario(EVERYTHING).replace(
            arrivals=load_scenario(EVERYTHING).arrivals.with_rate(30.0)
        )
    )
    assert out.read_text(encoding="utf-8") == expected.to_json()
    assert '"rate": 30.0' in out.read_text(encoding="utf-8")


def test_the_console_script_is_declared() -> None:
    scripts = metadata.entry_points(group="console_scripts")
    assert scripts["aioresilience"].value == "aioresilience.sim.cli:main"


def test_a_missing_extra_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aioresilience.sim import cli

    def without_rich() -> None:
        raise ModuleNotFoundError("No module named 'rich'", name="rich")

    monkeypatch.setattr(cli, "_import_live", without_rich)
    with pytest.raises(SystemExit) as exited:
        cli.main(["simulate", "quota", "--quiet"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "aioresilience: error: the live view needs rich, which the extra 'sim' installs: "
        "pip install 'aioresilience[sim]'\n"
    )


def test_a_missing_extra_is_named_when_rich_is_really_absent() -> None:
    # Not a patched import: rich is gone as it is without the extra (the view imports it only
    # when built, and that ImportError was a traceback rather than the usage line).
    code = (
        "import sys\n"
        "sys.modules['rich'] = None\n"
        "from aioresilience.sim.cli import main\n"
        "main(['simulate', 'quota', '--duration', '2s', '--quiet'])\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr == (
        "aioresilience: error: the live view needs rich, which the extra 'sim' installs: "
        "pip install 'aioresilience[sim]'\n"
    )

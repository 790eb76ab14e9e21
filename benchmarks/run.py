"""Run the benchmarks and print Markdown tables; ``--json`` also records them for report.py.

``make bench`` runs this once per supported interpreter, each in its own venv, with
``--json benchmarks/results/X.Y.json``, then ``benchmarks/report.py`` renders RESULTS.md from
those files. By hand:

    python benchmarks/run.py                      # everything, printed
    python benchmarks/run.py --only guards        # one group (ratelimit, guards, ... client)
    python benchmarks/run.py --only breaker,timeout --loop asyncio   # parts of a group, one loop
    python benchmarks/run.py --quick              # few iterations: a smoke run
    python benchmarks/run.py --at f0f61c0 --json benchmarks/results/f0f61c0/3.11.json

``--json`` merges into the file: sections measured now replace the same sections (part, kind
and loop) of earlier runs, the others are kept, and each section names the run (commit, date,
load) it came from. ``--at REF`` measures the package as it was at a git commit with these
benchmark scripts: it exports ``aioresilience/`` at REF into a temporary directory and runs
this script again with that directory first on PYTHONPATH (ahead of the venv's editable
install of the work tree).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_client  # noqa: E402
import bench_guards  # noqa: E402
import bench_ratelimit  # noqa: E402
import bench_redis  # noqa: E402
import bench_web  # noqa: E402
from harness import cases, loops, measure, paired_overhead  # noqa: E402
from tables import Section, render  # noqa: E402

import aioresilience  # noqa: E402
from aioresilience.testing import RedisServer  # noqa: E402

PEERS = [
    "aiolimiter",
    "limits",
    "pyrate-limiter",
    "hyx",
    "aiobreaker",
    "purgatory",
    "backoff",
    "tenacity",
    "stamina",
    "anyio",
    "uvloop",
    "redis",
    # the web group's servers and peers (bench_web records their versions itself)
    "fastapi",
    "uvicorn",
    "aiohttp",
    "slowapi",
    "fastapi-limiter",
    "throttled-py",
    "aiohttp-ratelimiter",
    # the client group's peers (bench_client records its versions itself)
    "httpx",
    "httpx-retries",
    "aiohttp-retry",
]

# Groups and their parts, in the order they run and are printed. ratelimit and guards run once
# per event loop (asyncio, then uvloop); keyed and redis once (redis on both loops itself).
GUARDS = {
    "breaker": ("Circuit breaker, closed path", bench_guards.breaker_cases),
    "retry": ("Retry, first attempt succeeds", bench_guards.retry_cases),
    "timeout": ("Timeout that does not fire", bench_guards.timeout_cases),
    "bulkhead": ("Bulkhead, uncontended", bench_guards.bulkhead_cases),
    "queue": ("Queue, put+get pair", bench_guards.queue_cases),
    "adaptive": ("Adaptive limiter, admit+release", bench_guards.adaptive_cases),
    "pipeline": (
        "Pipeline: timeout -> rate limit -> retry -> breaker -> timeout",
        bench_guards.pipeline_cases,
    ),
}
GROUPS: dict[str, tuple[str, ...]] = {
    "ratelimit": ("admit", "accuracy"),
    "guards": tuple(GUARDS),
    "keyed": ("keyed",),
    "redis": ("redis",),
    "web": ("web", "overload"),
    "sim": ("sim", "sim_memory"),
    "client": ("client", "client_fault"),
}
PER_LOOP = ("ratelimit", "guards")


def guards(
    loop_name: str, factory: Callable[[], asyncio.AbstractEventLoop], quick: bool, parts: set[str]
) -> list[Section]:
    n, repeats = (5_000, 3) if quick else (30_000, 9)
    out: list[Section] = []
    with asyncio.Runner(loop_factory=factory) as runner:
        for part, (title, make_cases) in GUARDS.items():
            if part not in parts:
                continue
            out.append(cases(title, loop_name, runner.run(measure(make_cases(), n, repeats))))
            emit(out[-1], "guards", part)
        if "pipeline" in parts:
            pairs = 6 if quick else 42  # even: each of the two goes first equally often
            rows = []
            for name, (base, variant) in bench_guards.pipeline_pairs().items():
                median, low, high = runner.run(paired_overhead(base, variant, n // 6, pairs))
                rows.append({"case": name, "median": median, "p10": low, "p90": high})
            out.append(
                {
                    "kind": "pairs",
                    "title": "Five-strategy pipeline",
                    "loop": loop_name,
                    "pairs": pairs,
                    "calls": n // 6,
                    "rows": rows,
                }
            )
            emit(out[-1], "guards", "pipeline")
    return out


def emit(section: Section, group: str, part: str) -> None:
    """Tag a finished section with where it belongs, and print it at once."""
    section["group"], section["part"] = group, part
    section["load_1min"] = round(os.getloadavg()[0], 2)  # what else the machine was doing
    print(render(section), flush=True)


def package_commit() -> tuple[str, bool]:
    """The last commit that changed the package being measured (``--at`` passes its own), and
    whether its files differ from it. The last change, not HEAD: commits that touch only the
    benchmarks or the docs leave the package, and so its numbers, where they were."""
    given = os.environ.get("AIORESILIENCE_BENCH_COMMIT")
    if given:
        return given, False
    where = str(Path(aioresilience.__file__).resolve().parent)
    try:
        commit = subprocess.run(
            ["git", "-C", where, "log", "-1", "--format=%H", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit or "unknown", bool(dirty)


def environment() -> dict[str, Any]:
    peers = {}
    for name in PEERS:
        try:
            peers[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            peers[name] = None
    return {
        "python": platform.python_version(),
        "version": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "peers": peers,
    }


def header(env: dict[str, Any], commit: str, dirty: bool) -> str:
    peers = ", ".join(f"{k} {v or '(not installed)'}" for k, v in env["peers"].items())
    return (
        f"Python {env['python']} ({env['implementation']}), {env['machine']}, "
        f"{env['cores']} cores; aioresilience at {commit[:12]}{' (modified)' if dirty else ''} "
        f"({Path(aioresilience.__file__).parent}); {peers}\n"
    )


def selected(only: str | None) -> dict[str, set[str]]:
    """Group -> the parts of it to run, from ``--only`` (groups or parts, comma-separated)."""
    if not only:
        return {group: set(parts) for group, parts in GROUPS.items()}
    chosen: dict[str, set[str]] = {}
    for word in filter(None, (w.strip() for w in only.split(","))):
        for group, parts in GROUPS.items():
            if word == group:
                chosen.setdefault(group, set()).update(parts)
                break
            if word in parts:
                chosen.setdefault(group, set()).add(word)
                break
        else:
            names = ", ".join(list(GROUPS) + [p for ps in GROUPS.values() for p in ps])
            raise SystemExit(f"run.py: --only {word!r} is neither a group nor a part: {names}")
    return chosen


def run_all(chosen: dict[str, set[str]], loop_names: list[str], quick: bool) -> list[Section]:
    factories = {name: f for name, f in loops().items() if name in loop_names}
    out: list[Section] = []
    for loop_name, factory in factories.items():
        if "ratelimit" in chosen:
            parts = chosen["ratelimit"]
            for part, section in bench_ratelimit.run(factory, loop_name, quick, parts).items():
                emit(section, "ratelimit", part)
                out.append(section)
        if "guards" in chosen:
            out += guards(loop_name, factory, quick, chosen["guards"])
    if "keyed" in chosen:
        for section in bench_ratelimit.run_once(quick):
            emit(section, "keyed", "keyed")
            out.append(section)
    if "redis" in chosen:
        if RedisServer.available():
            for section in bench_redis.run(factories, quick):
                emit(section, "redis", "redis")
                out.append(section)
        else:
            note = {
                "kind": "note",
                "title": "Redis",
                "text": "### Redis: skipped, redis-server not found (apt-get install -y "
                "redis-server, or brew install redis)\n",
            }
            emit(note, "redis", "redis")
            out.append(note)
    # The simulator: its own virtual-time loops. Imported only when asked for: a package of
    # before the simulator (BENCH_AT=f0f61c0) has no aioresilience.sim.
    if chosen.get("sim"):
        import bench_sim

        for part, section in bench_sim.run(quick, chosen["sim"]):
            emit(section, "sim", part)
            out.append(section)
    # The web group: its own servers, each on uvicorn's or aiohttp's default loop.
    for part, measure_part in (("web", bench_web.run), ("overload", bench_web.overload_section)):
        if part in chosen.get("web", ()):
            section = measure_part(quick)
            emit(section, "web", part)
            out.append(section)
    # The client group: a server process of its own, the clients on asyncio's default loop.
    for part, measure_part in (("client", bench_client.cpu), ("client_fault", bench_client.fault)):
        if part in chosen.get("client", ()):
            section = measure_part(quick)
            emit(section, "client", part)
            out.append(section)
    return out


def order(section: Section) -> tuple[int, int, int, int]:
    """Where a section goes in a results file: the order a full run prints them in."""
    group, part = section["group"], section["part"]
    loop_index = list(loops()).index(section["loop"]) if section.get("loop") in loops() else 9
    groups, parts = list(GROUPS), GROUPS[group]
    per_loop = group in PER_LOOP
    return (
        0 if per_loop else 1,
        loop_index if per_loop else 0,
        groups.index(group),
        parts.index(part) if part in parts else 99,
    )


def key(section: Section) -> tuple[str, str, str | None]:
    """What a section is, whatever its title says (the keyed title names the key count)."""
    return section["part"], section["kind"], section.get("loop")


def save(path: Path, env: dict[str, Any], run: dict[str, Any], sections: list[Section]) -> None:
    """Merge this run's sections into ``path`` (see the module docstring)."""
    data: dict[str, Any] = {"runs": {}, "sections": []}
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != env["version"]:
            raise SystemExit(
                f"run.py: {path} holds results of Python {data.get('version')}, this is "
                f"{env['version']}: give --json a file of its own"
            )
    new = {key(s) for s in sections}
    kept = [s for s in data["sections"] if key(s) not in new]
    for section in sections:
        section["run"] = run["id"]
    data.update(env)
    data["sections"] = sorted(kept + sections, key=order)
    used = {s["run"] for s in data["sections"]}
    data["runs"] = {k: v for k, v in {**data["runs"], run["id"]: run}.items() if k in used}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rounded(data), indent=1) + "\n", encoding="utf-8")


def rounded(value: Any) -> Any:
    """Floats to 4 decimals: the files stay readable, and no number is that precise."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def run_at(ref: str, argv: list[str]) -> int:
    """Run this script against the package as it was at ``ref`` (module docstring)."""
    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", "--format=tar", commit, "aioresilience"],
        capture_output=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory(prefix=f"aioresilience-{commit[:7]}-") as tree:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        env = dict(os.environ, AIORESILIENCE_BENCH_COMMIT=commit)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
        return subprocess.call([sys.executable, __file__, *argv], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke run")
    parser.add_argument(
        "--only",
        help="comma-separated groups or parts of them: ratelimit (admit, accuracy), guards "
        "(breaker, retry, timeout, bulkhead, queue, adaptive, pipeline), keyed (and burst after "
        "idle), redis (a redis-server the bench starts), web (web: server CPU per request "
        "of FastAPI/uvicorn and aiohttp servers, ours and the peers; overload: the adaptive "
        "limiter at the edge under 2x load), sim (sim: simulated requests/s of wall time through "
        "a five-strategy pipeline; sim_memory: tracemalloc peak at 10 vs 60 simulated minutes)",
    )
    parser.add_argument(
        "--loop", action="append", choices=list(loops()), help="only this event loop (repeatable)"
    )
    parser.add_argument("--json", type=Path, help="merge the results into this file")
    parser.add_argument("--at", metavar="REF", help="measure the package at this git commit")
    args = parser.parse_args()
    if args.at:
        argv = sys.argv[1:]
        index = next(i for i, a in enumerate(argv) if a == "--at" or a.startswith("--at="))
        del argv[index : index + (1 if "=" in argv[index] else 2)]
        raise SystemExit(run_at(args.at, argv))
    chosen = selected(args.only)
    env = environment()
    commit, dirty = package_commit()
    print(header(env, commit, dirty), flush=True)
    started, load = time.perf_counter(), os.getloadavg()[0]
    sections = run_all(chosen, args.loop or list(loops()), args.quick)
    run = {
        "id": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "modified": dirty,
        "package": str(Path(aioresilience.__file__).resolve().parent),
        "only": args.only,
        "loops": args.loop or list(loops()),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "load_1min": [round(load, 2), round(os.getloadavg()[0], 2)],
    }
    print(f"(took {run['seconds']:.0f} s; load average {load:.2f} -> {os.getloadavg()[0]:.2f})")
    if args.json:
        save(args.json, env, run, sections)


if __name__ == "__main__":
    main()

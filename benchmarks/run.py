"""Run every benchmark and print Markdown tables (``make bench``; ``--quick`` for a smoke run).

Results go to stdout; benchmarks/RESULTS.md records a full run with its machine and versions.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_ratelimit
from harness import loops

PEERS = ["aioresilience", "aiolimiter", "limits", "pyrate-limiter", "hyx", "uvloop"]


def header() -> str:
    versions = []
    for name in PEERS:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {os.cpu_count()} cores; " + ", ".join(versions) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke run")
    args = parser.parse_args()
    print(header())
    for loop_name, factory in loops().items():
        print(bench_ratelimit.run(factory, loop_name, args.quick), flush=True)
    print(bench_ratelimit.run_once(args.quick), flush=True)


if __name__ == "__main__":
    main()

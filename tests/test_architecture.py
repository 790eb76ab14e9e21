"""The package's import graph keeps the layers of the tree (README "Layout", DESIGN.md):

- no import cycle anywhere;
- ``_core`` (pure algorithms) imports nothing outside ``_core``, and no asyncio;
- ``_support`` (the plumbing) imports only ``_support`` and ``_core``: no pattern module,
  store, integration or ``testing``, and not the package's ``__init__`` (which imports them);
- ``abc`` (the public seams) sits right above the plumbing: it imports only ``_support`` and
  ``_core`` (it re-exports their seam types), so every pattern, store and integration can
  import it without a cycle;
- only the outer layers (``stores``, ``integrations``, ``testing``, and the simulator:
  ``sim`` and ``__main__``) import the outer layers (the front-ends know nothing of them);
  the simulator sits outermost, since it runs pipelines on ``testing``'s virtual-time loop.

The graph is read from the source (the AST), never by importing it, so modules whose extras
are not installed (Redis, OpenTelemetry, Prometheus) are checked too. Every import counts
wherever it is written: at module level, under ``if TYPE_CHECKING:``, or inside a function (a
deferred import that dodges a cycle at run time still ties the two modules together).
"""

from __future__ import annotations

import ast
import pkgutil
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import aioresilience

ROOT = "aioresilience"
PACKAGE = Path(aioresilience.__file__).parent

# Imports of stores/integrations/testing from the rest of the package that are still needed
# today, each with the reason; the goal is an empty set.
ALLOWED_UPWARD: frozenset[tuple[str, str]] = frozenset()


def modules(path: Path, prefix: str) -> Iterator[tuple[str, Path, bool]]:
    """(dotted name, file, is a package) of every module under ``path``, found on disk with
    pkgutil.iter_modules, package by package (pkgutil.walk_packages would import them)."""
    yield prefix, path / "__init__.py", True
    for info in pkgutil.iter_modules([str(path)]):
        name = f"{prefix}.{info.name}"
        if info.ispkg:
            yield from modules(path / info.name, name)
        else:
            yield name, path / f"{info.name}.py", False


def import_graph(path: Path, prefix: str) -> dict[str, set[str]]:
    """Each module of the package at ``path`` (named ``prefix``) -> the modules of the same
    package it imports. ``import a.b.c`` and ``from a.b import c`` reach ``a.b.c`` if it is
    a module, else ``a.b`` (a name defined in its ``__init__``), and also run the
    ``__init__`` of every enclosing package the importer is not itself inside."""
    found = {name: (file, is_pkg) for name, file, is_pkg in modules(path, prefix)}
    graph: dict[str, set[str]] = {}
    for name, (file, is_pkg) in found.items():
        here = name if is_pkg else name.rpartition(".")[0]  # what `.` means in this file
        targets: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    targets.add(sub if sub in found else module)
        edges: set[str] = set()
        for target in targets:
            if target != prefix and not target.startswith(prefix + "."):
                continue
            while target not in found:  # `import a.b.name` of something that is not a module
                target = target.rpartition(".")[0]
            edges.add(target)
            # Importing a.b.c runs a/__init__ and a/b/__init__ first, unless the importer is
            # inside them (then they are already being imported: no edge).
            parent = target.rpartition(".")[0]
            while parent and not (name == parent or name.startswith(parent + ".")):
                edges.add(parent)
                parent = parent.rpartition(".")[0]
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]`` of ``graph``, or None (depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
            elif step in on_path:
                return [*path[path.index(step) :], step]
            elif step not in done:
                path.append(step)
                on_path.add(step)
                stack.append(iter(sorted(graph.get(step, ()))))
    return None


GRAPH = import_graph(PACKAGE, ROOT)


def within(name: str, *packages: str) -> bool:
    return any(name == f"{ROOT}.{p}" or name.startswith(f"{ROOT}.{p}.") for p in packages)


def test_the_graph_sees_every_module_and_every_kind_of_import() -> None:
    """A guard on the reader itself: modules behind extras are in the graph, and imports
    under TYPE_CHECKING, inside functions, relative and absolute are all edges."""
    assert {f"{ROOT}.stores.redis._store", f"{ROOT}.integrations.prometheus"} <= set(GRAPH)
    assert f"{ROOT}._core.gcra" in GRAPH[f"{ROOT}._core.leaky_bucket"]  # from .gcra import
    assert f"{ROOT}._support.errors" in GRAPH[f"{ROOT}.testing._virtual"]  # from .._support import
    assert f"{ROOT}._support" in GRAPH[f"{ROOT}.testing._virtual"]  # ... runs its __init__
    assert f"{ROOT}._support.listeners" in GRAPH[f"{ROOT}._support.context"]  # TYPE_CHECKING
    assert f"{ROOT}.stores.redis._store" in GRAPH[f"{ROOT}.stores.redis"]  # a package's init


def test_no_import_cycle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_core_imports_only_core_and_no_asyncio() -> None:
    for name in (n for n in GRAPH if within(n, "_core")):
        outside = {t for t in GRAPH[name] if not within(t, "_core")}
        assert not outside, f"{name} imports {sorted(outside)} from outside _core"
    for path in (PACKAGE / "_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                imported = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "asyncio" for n in imported), (
                f"{path} imports asyncio"
            )


def test_support_sits_below_the_patterns() -> None:
    """The plumbing imports only the plumbing and the pure core: no pattern, store,
    integration or testing module, and not the package's __init__ (it imports them all)."""
    for name in (n for n in GRAPH if within(n, "_support")):
        above = {t for t in GRAPH[name] if not within(t, "_support", "_core")}
        assert not above, f"{name} imports {sorted(above)}"


def test_abc_sits_above_the_plumbing_only() -> None:
    """The public seams import the plumbing and the pure core, nothing above them; and the
    plumbing does not import them back (an edge either way would close a cycle)."""
    seams = f"{ROOT}.abc"
    assert GRAPH[seams], "abc imports nothing: the graph lost it"
    above = {t for t in GRAPH[seams] if not within(t, "_support", "_core")}
    assert not above, f"{seams} imports {sorted(above)}"
    below = {n for n in GRAPH if within(n, "_support", "_core") and seams in GRAPH[n]}
    assert not below, f"{sorted(below)} import {seams}"


def test_only_the_outer_layers_import_stores_integrations_and_testing() -> None:
    outer = ("stores", "integrations", "testing", "sim", "__main__")
    upward = {
        (name, target)
        for name, targets in GRAPH.items()
        if not within(name, *outer)
        for target in targets
        if within(target, *outer)
    }
    assert upward <= ALLOWED_UPWARD, f"not allowed: {sorted(upward - ALLOWED_UPWARD)}"
    assert upward >= ALLOWED_UPWARD, f"no longer needed: {sorted(ALLOWED_UPWARD - upward)}"


# -- the checks can fail ------------------------------------------------------------------------


def test_find_cycle_reports_a_cycle_and_passes_a_dag() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"y"}}) == ["y", "z", "y"]


def test_a_cycle_hidden_in_a_function_or_type_checking_is_found(tmp_path: Path) -> None:
    """A tmp package whose modules import each other only through a deferred import and a
    TYPE_CHECKING one: the graph has the cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from .a import A\n",
        "a.py": "class A:\n    def b(self):\n        from .sub import b\n        return b.B\n",
        "sub/__init__.py": "",
        "sub/b.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from ..a import A\n"
            "class B: ...\n"
        ),
        "c.py": "from pkg import A\n",  # the package's own __init__ is a module like others
    }
    for file, text in files.items():
        (pkg / file).write_text(textwrap.dedent(text))
    graph = import_graph(pkg, "pkg")
    assert graph["pkg"] == {"pkg.a"}
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.a"}
    assert graph["pkg.c"] == {"pkg"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]


def test_only_the_simulator_imports_the_simulator() -> None:
    """``import aioresilience`` (and every other layer) never reaches the simulator: it is the
    outermost layer, and its extra (``sim``) stays optional."""
    importers = {name for name, targets in GRAPH.items() if any(within(t, "sim") for t in targets)}
    assert importers <= {n for n in GRAPH if within(n, "sim", "__main__")}, sorted(importers)
    assert f"{ROOT}.sim.cli" in GRAPH[f"{ROOT}.__main__"]  # the graph sees the simulator

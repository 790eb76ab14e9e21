"""Documented APIs only (issue 12 item 1): no private or undocumented attribute of asyncio, of
its loops, tasks, futures and handles, or of CPython, anywhere in the package.

The package's source is read as ASTs (never imported for this), every ``.py`` under
``aioresilience/`` and its extras' modules alike. A finding is one of:

- an import of a private module or name of asyncio or the standard library
  (``from asyncio import _x``, ``from asyncio.events import _get_running_loop``,
  ``import _asyncio``, ``from sys import _getframe``), or of a name that the asyncio module it
  comes from does not list in its ``__all__`` (undocumented: ``from asyncio.format_helpers
  import extract_stack``);
- an attribute path through a module of asyncio or the standard library, under any alias
  (``import asyncio as aio``, ``from asyncio import tasks``), with a private part
  (``asyncio.tasks._current_tasks``, ``sys._getframe``, ``aio.events._get_running_loop``), or
  a public part that asyncio's module does not export (``asyncio.base_futures.isfuture``);
- a private attribute of an object obtained from asyncio: a loop, task, future or handle
  (``get_running_loop()._x``, ``task._x``, ``x.get_loop()._x``, ``loop._thread_id``;
  ``self._x`` in a subclass of an asyncio class, or such a subclass overriding a private
  method), read, written or named in ``getattr``/``setattr``/``hasattr``/``delattr`` with a
  literal string. "Obtained from
  asyncio": what asyncio's functions and a loop's factory methods return, a name bound to
  that, and a variable or attribute named like one (``loop``, ``task``, ``future``, ``fut``,
  ``waiter``, ``handle``, or ending in ``_loop``, ``_task``...), unless the function binds it
  to something else. The private names of asyncio itself (its source and its classes'
  attributes) are always findings on such an object; another private name is one unless the
  package defines it itself (a subclass's own state: the virtual-time loop's ``_vt_*``);
- ``asyncio.Future(loop=...)`` with a ``loop`` that is not a loop (a stand-in object);
- loading ``_asyncio`` or a private asyncio module by name (``importlib.import_module``,
  ``__import__``, ``sys.modules[...]``).

Dunder names (``__name__``, ``__traceback__``) are documented data model, not private. The
checker is unit-tested on snippets it must catch and ones it must pass (it can fail); the
package passes with no allow-list at all.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import re
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import aioresilience

PACKAGE = Path(aioresilience.__file__).parent
ASYNCIO_DIR = Path(asyncio.__file__).parent

STDLIB = frozenset(sys.stdlib_module_names)

# What asyncio's functions return that is a loop, task, future or handle; and the methods of
# such an object that return another (a loop's factories, a future's get_loop).
ASYNCIO_MAKERS = frozenset(
    {
        "get_running_loop",
        "get_event_loop",
        "new_event_loop",
        "current_task",
        "create_task",
        "ensure_future",
        "shield",
        "wrap_future",
        "Future",
        "Task",
        "sleep",
        "gather",
        "wait_for",
    }
)
LOOP_METHODS_MAKING = frozenset(
    {
        "create_future",
        "create_task",
        "call_at",
        "call_later",
        "call_soon",
        "call_soon_threadsafe",
        "run_in_executor",
        "get_loop",
        "get_coro",
    }
)
# A variable or attribute named like this holds a loop, task, future or handle (unless the
# function binds it to something else).
ASYNCIO_LIKE_NAME = re.compile(r"^(\w*_)?(loop|task|future|fut|waiter|handle)$")
ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def asyncio_private_names() -> frozenset[str]:
    """Every private name asyncio uses: attributes and definitions in its source, and the
    attributes of its loop, task, future and handle classes (the C ones included)."""
    names: set[str] = set()
    for path in ASYNCIO_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name):
                names.add(node.id)
    for cls in (
        asyncio.AbstractEventLoop,
        asyncio.SelectorEventLoop,
        asyncio.Future,
        asyncio.Task,
        asyncio.Handle,
        asyncio.TimerHandle,
        asyncio.Runner,
    ):
        names.update(dir(cls))
    return frozenset(n for n in names if is_private(n))


def own_private_names(paths: list[Path]) -> frozenset[str]:
    """The private names the package itself defines: attributes it assigns, methods and
    class attributes of its classes, ``__slots__`` entries."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        names.add(item.name)
                    elif isinstance(item, ast.Assign | ast.AnnAssign):
                        targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                        names.update(t.id for t in targets if isinstance(t, ast.Name))
                        if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets):
                            names.update(
                                c.value
                                for c in ast.walk(item.value)  # type: ignore[arg-type]
                                if isinstance(c, ast.Constant) and isinstance(c.value, str)
                            )
    return frozenset(n for n in names if is_private(n))


ASYNCIO_PRIVATE = asyncio_private_names()


def undocumented(module: str, name: str) -> bool:
    """Whether asyncio's ``module`` has ``name`` without exporting it (a name this Python
    lacks is another version's API: not judged here, every supported Python runs this)."""
    exports = module_exports(module)
    if exports is None or name in exports or not name.isidentifier():
        return False
    return hasattr(importlib.import_module(module), name)


def module_exports(module: str) -> frozenset[str] | None:
    """The public names an asyncio module documents (its ``__all__``, and its submodules);
    None for a module outside asyncio (any public name of the standard library counts)."""
    if module != "asyncio" and not module.startswith("asyncio."):
        return None
    try:
        imported = importlib.import_module(module)
    except ImportError:  # a module of another platform or version: nothing to compare
        return None
    exported = set(getattr(imported, "__all__", ()))
    if module == "asyncio":
        exported.update(p.stem for p in ASYNCIO_DIR.glob("*.py") if not is_private(p.stem))
    return frozenset(exported)


@dataclass
class Scope:
    """One function's (or the module's) bindings: which names hold asyncio objects."""

    asyncio_bound: set[str] = field(default_factory=set)
    other_bound: set[str] = field(default_factory=set)


class Checker(ast.NodeVisitor):
    def __init__(self, filename: str, own: frozenset[str]) -> None:
        self.filename = filename
        self.own = own
        self.findings: list[str] = []
        self.modules: dict[str, str] = {}  # local name -> stdlib module it is ("aio": asyncio)
        self.functions: dict[str, str] = {}  # local name -> asyncio function it is
        self.asyncio_attributes: set[str] = set()  # self.x assigned an asyncio object
        self.scopes: list[Scope] = [Scope()]
        self.asyncio_classes: list[bool] = []  # per enclosing class: subclasses asyncio's

    def report(self, node: ast.AST, what: str) -> None:
        self.findings.append(f"{self.filename}:{getattr(node, 'lineno', 0)}: {what}")

    # -- what an expression is ------------------------------------------------------------------

    def module_of(self, node: ast.expr) -> str | None:
        """The stdlib module an expression names (``aio``, ``asyncio.events``), else None."""
        if isinstance(node, ast.Name):
            return self.modules.get(node.id)
        if isinstance(node, ast.Attribute):
            parent = self.module_of(node.value)
            if parent is not None and parent.split(".")[0] == "asyncio":
                candidate = f"{parent}.{node.attr}"
                if (ASYNCIO_DIR / f"{node.attr}.py").exists():
                    return candidate
        return None

    def asyncio_function(self, node: ast.expr) -> str | None:
        """The asyncio function an expression names (``asyncio.get_running_loop``, an alias
        of it), else None."""
        if isinstance(node, ast.Name):
            return self.functions.get(node.id)
        if isinstance(node, ast.Attribute):
            module = self.module_of(node.value)
            if module is not None and module.split(".")[0] == "asyncio":
                return node.attr
        return None

    def is_asyncio_object(self, node: ast.expr) -> bool:
        """Whether an expression's value is a loop, task, future or handle (or the asyncio
        class instance ``self`` is)."""
        if isinstance(node, ast.Call):
            func = node.func
            if self.asyncio_function(func) in ASYNCIO_MAKERS:
                return True
            if isinstance(func, ast.Attribute) and func.attr in LOOP_METHODS_MAKING:
                return func.attr in {"get_loop", "get_coro"} or self.is_asyncio_object(func.value)
            if isinstance(func, ast.Name) and func.id == "super":
                return bool(self.asyncio_classes) and self.asyncio_classes[-1]
            return False
        if isinstance(node, ast.Await):
            return False
        if isinstance(node, ast.Name):
            if node.id in ("self", "cls") and self.asyncio_classes and self.asyncio_classes[-1]:
                return True
            for scope in reversed(self.scopes):
                if node.id in scope.asyncio_bound:
                    return True
                if node.id in scope.other_bound:
                    return False
            return bool(ASYNCIO_LIKE_NAME.match(node.id))
        if isinstance(node, ast.Attribute):
            if self.module_of(node.value) is not None:
                return False
            if (
                isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
                and node.attr in self.asyncio_attributes
            ):
                return True
            return bool(ASYNCIO_LIKE_NAME.match(node.attr))
        return False

    # -- imports ------------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.check_module_path(node, alias.name)
            root = alias.name.split(".")[0]
            if root in STDLIB:
                if alias.asname:
                    self.modules[alias.asname] = alias.name
                else:
                    self.modules[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return
        module = node.module
        self.check_module_path(node, module)
        if module.split(".")[0] not in STDLIB:
            return
        for alias in node.names:
            local = alias.asname or alias.name
            if is_private(alias.name):
                self.report(node, f"imports the private {module}.{alias.name}")
            elif alias.name != "*" and undocumented(module, alias.name):
                self.report(node, f"imports {module}.{alias.name}, which {module} does not export")
            submodule = f"{module}.{alias.name}"
            if module.split(".")[0] == "asyncio" and (ASYNCIO_DIR / f"{alias.name}.py").exists():
                self.modules[local] = submodule
            elif module == "asyncio":
                self.functions[local] = alias.name

    def check_module_path(self, node: ast.AST, dotted: str) -> None:
        parts = dotted.split(".")
        if parts[0] == "_asyncio":
            self.report(node, "imports _asyncio (CPython's private C accelerator)")
        elif parts[0] in STDLIB and any(is_private(p) for p in parts[1:]):
            self.report(node, f"imports the private module {dotted}")

    # -- scopes -------------------------------------------------------------------------------

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        from_asyncio = any(
            self.module_of(base.value) is not None
            and (self.module_of(base.value) or "").split(".")[0] == "asyncio"
            for base in node.bases
            if isinstance(base, ast.Attribute)
        ) or any(isinstance(base, ast.Name) and base.id in self.functions for base in node.bases)
        if from_asyncio:  # overriding asyncio's private method is depending on it
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and (
                    item.name in ASYNCIO_PRIVATE
                ):
                    self.report(item, f"overrides asyncio's private {item.name}")
        self.asyncio_classes.append(from_asyncio)
        self.generic_visit(node)
        self.asyncio_classes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        scope = Scope()
        # Flow-insensitive: a name this function binds to an asyncio object anywhere is one;
        # a name it binds only to other values is not, whatever it is called.
        for child in ast.walk(node):
            if isinstance(child, ast.Assign | ast.AnnAssign) and child.value is not None:
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        bound = self.is_asyncio_object(child.value)
                        (scope.asyncio_bound if bound else scope.other_bound).add(target.id)
        scope.other_bound -= scope.asyncio_bound
        self.scopes.append(scope)
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name) and len(self.scopes) == 1:
                # Module level: an alias of an asyncio function or module.
                function = self.asyncio_function(node.value)
                if function is not None:
                    self.functions[target.id] = function
                module = self.module_of(node.value)
                if module is not None:
                    self.modules[target.id] = module
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
                and self.is_asyncio_object(node.value)
            ):
                self.asyncio_attributes.add(target.attr)
        self.generic_visit(node)

    # -- uses ---------------------------------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> None:
        module = self.module_of(node.value)
        if module is not None:
            if is_private(node.attr):
                self.report(node, f"reaches the private {module}.{node.attr}")
            elif (
                not node.attr.startswith("__")
                and self.module_of(node) is None
                and undocumented(module, node.attr)
            ):
                self.report(node, f"reaches {module}.{node.attr}, which {module} does not export")
        elif is_private(node.attr) and self.is_asyncio_object(node.value):
            self.check_private_attribute(node, node.attr)
        self.generic_visit(node)

    def check_private_attribute(self, node: ast.AST, name: str) -> None:
        if name in ASYNCIO_PRIVATE:
            self.report(node, f"uses asyncio's private attribute {name} of a loop/task/future")
        elif name not in self.own:
            self.report(node, f"uses the private attribute {name} of a loop/task/future")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ATTRIBUTE_FUNCTIONS and len(node.args) >= 2:
            obj, name = node.args[0], node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                module = self.module_of(obj)
                if module is not None and is_private(name.value):
                    self.report(node, f"{func.id}() of the private {module}.{name.value}")
                elif is_private(name.value) and self.is_asyncio_object(obj):
                    self.check_private_attribute(node, name.value)
        if self.asyncio_function(func) == "Future":
            for keyword in node.keywords:
                value = keyword.value
                real = (
                    isinstance(value, ast.Constant) and value.value is None
                ) or self.is_asyncio_object(value)
                if keyword.arg == "loop" and not real:
                    self.report(node, "asyncio.Future(loop=...) with something that is no loop")
        loader = (func.id if isinstance(func, ast.Name) else None) or (
            func.attr if isinstance(func, ast.Attribute) else None
        )
        if loader in ("import_module", "__import__") and node.args:
            self.check_module_literal(node, node.args[0])
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        value = node.value
        if (
            isinstance(value, ast.Attribute)
            and value.attr == "modules"
            and self.module_of(value.value) == "sys"
        ):
            self.check_module_literal(node, node.slice)
        self.generic_visit(node)

    def check_module_literal(self, node: ast.AST, literal: ast.expr) -> None:
        if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
            self.check_module_path(node, literal.value)


def check_source(
    source: str, filename: str = "<snippet>", own: frozenset[str] = frozenset()
) -> list[str]:
    checker = Checker(filename, own)
    checker.visit(ast.parse(source, filename))
    return checker.findings


def package_files() -> Iterator[Path]:
    yield from sorted(PACKAGE.rglob("*.py"))


# -- the package ------------------------------------------------------------------------------


def test_the_package_uses_documented_apis_only() -> None:
    files = list(package_files())
    assert len(files) > 40 and PACKAGE / "testing" / "_virtual.py" in files
    own = own_private_names(files)
    findings = [
        finding
        for path in files
        for finding in check_source(
            path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)), own
        )
    ]
    assert not findings, "\n".join(findings)


def test_the_private_name_sets_are_real() -> None:
    """Guards on the checker's inputs: asyncio's private names include the ones issue 12
    removed, and the package's own include the virtual-time loop's state."""
    assert {"_current_tasks", "_thread_id", "_get_running_loop", "_ready", "_loop"} <= (
        ASYNCIO_PRIVATE
    )
    own = own_private_names(list(package_files()))
    assert "_virtual_now" in own and "_vt_real_wait" in own


# -- the checker can fail ---------------------------------------------------------------------

CAUGHT = {
    "asyncio.tasks._x": "import asyncio\nasyncio.tasks._current_tasks\n",
    "asyncio.events private": "import asyncio\nasyncio.events._get_running_loop()\n",
    "from asyncio import _x": "from asyncio import _get_running_loop\n",
    "from asyncio.tasks import _x": "from asyncio.tasks import _current_tasks\n",
    "import asyncio as aio": "import asyncio as aio\naio.events._get_running_loop()\n",
    "from asyncio import tasks": "from asyncio import tasks\ntasks._current_tasks\n",
    "from asyncio import events as ev": "from asyncio import events as ev\nev._set_running_loop\n",
    "import asyncio.tasks as t": "import asyncio.tasks as t\nt._PyTask\n",
    "import asyncio.events": "import asyncio.events\nasyncio.events._get_running_loop\n",
    "undocumented submodule name": "import asyncio\nasyncio.base_futures.isfuture\n",
    "undocumented from-import": "from asyncio.format_helpers import extract_stack\n",
    "sys._getframe": "import sys\nsys._getframe(1)\n",
    "from sys import _getframe": "from sys import _getframe\n",
    "sys alias": "import sys as s\ns._current_frames()\n",
    "threading private": "import threading\nthreading._shutdown\n",
    "import _asyncio": "import _asyncio\n",
    "from _asyncio": "from _asyncio import Task\n",
    "import_module _asyncio": "import importlib\nimportlib.import_module('_asyncio')\n",
    "sys.modules _asyncio": "import sys\nsys.modules['_asyncio']\n",
    "get_running_loop()._x": "import asyncio\nasyncio.get_running_loop()._thread_id\n",
    "alias of get_running_loop": (
        "import asyncio\n_running = asyncio.get_running_loop\n"
        "def f():\n    l = _running()\n    return l._ready\n"
    ),
    "from-imported current_task": (
        "from asyncio import current_task\ndef f():\n    t = current_task()\n    t._coro\n"
    ),
    "loop._thread_id": "def f(loop):\n    return loop._thread_id\n",
    "last_loop._thread_id": "def f(last_loop):\n    return last_loop._thread_id\n",
    "task._x": "def f(task):\n    return task._fut_waiter\n",
    "get_loop()._x": "def f(x):\n    return x.get_loop()._scheduled\n",
    "self._loop._x": ("class A:\n    def f(self):\n        return self._loop._selector\n"),
    "self.x assigned a loop": (
        "import asyncio\nclass A:\n    def __init__(self):\n"
        "        self.current = asyncio.get_running_loop()\n"
        "    def f(self):\n        return self.current._ready\n"
    ),
    "future made by the loop": (
        "def f(loop):\n    waiting = loop.create_future()\n    waiting._callbacks\n"
    ),
    "handle from call_later": "def f(loop):\n    h = loop.call_later(1, print)\n    h._when\n",
    "unknown private name on a task": "def f(task):\n    task._something_else\n",
    "getattr literal": "def f(task):\n    return getattr(task, '_coro', None)\n",
    "setattr literal": "def f(fut):\n    setattr(fut, '_log_traceback', False)\n",
    "getattr of a module": "import sys\ngetattr(sys, '_getframe')\n",
    "subclass of an asyncio loop": (
        "import asyncio\nclass L(asyncio.SelectorEventLoop):\n"
        "    def f(self):\n        return self._scheduled\n"
    ),
    "override of a private method": (
        "import asyncio\nclass L(asyncio.SelectorEventLoop):\n    def _run_once(self): ...\n"
    ),
    "super() of an asyncio loop": (
        "import asyncio\nclass L(asyncio.SelectorEventLoop):\n"
        "    def f(self):\n        return super()._run_once()\n"
    ),
    "Future(loop=stand-in)": "import asyncio\nasyncio.Future(loop=object())\n",
    "Future(loop=a fake)": (
        "import asyncio\nclass Fake:\n    def get_debug(self): return False\n"
        "asyncio.Future(loop=Fake())\n"
    ),
    "from asyncio import Future": "from asyncio import Future as F\nF(loop=0)\n",
}

PASSED = {
    "documented calls": (
        "import asyncio\ndef f():\n    loop = asyncio.get_running_loop()\n"
        "    loop.call_at(loop.time() + 1, print)\n    asyncio.current_task()\n"
    ),
    "dunders": "import asyncio\ndef f(task):\n    return task.__class__, asyncio.__name__\n",
    "own private names on own objects": "class A:\n    def f(self):\n        return self._x\n",
    "a name bound to something else": "def f():\n    loop = Mine()\n    return loop._own\n",
    "own subclass state (own names)": (
        "import asyncio\nclass L(asyncio.SelectorEventLoop):\n"
        "    def f(self):\n        return self._mine\n"
    ),
    "a loop's own names of our subclass": "def f(loop):\n    return loop._mine\n",
    "Future(loop=a loop)": (
        "import asyncio\ndef f():\n    loop = asyncio.get_running_loop()\n"
        "    asyncio.Future(loop=loop), asyncio.Future(loop=None), asyncio.Future()\n"
    ),
    "documented submodule names": "import asyncio\nasyncio.events.AbstractEventLoop\n",
    "public stdlib names": "import sys\nsys.version_info, sys.modules['asyncio']\n",
    "relative imports": "from ._x import _y\nfrom . import _z\n",
    "third-party privates are not asyncio's": "import redis\nredis._x\n",
}


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_the_checker_catches(name: str) -> None:
    findings = check_source(CAUGHT[name], own=frozenset({"_mine", "_own", "_x"}))
    assert findings, f"not caught: {name}"


@pytest.mark.parametrize("name", sorted(PASSED))
def test_the_checker_passes(name: str) -> None:
    assert check_source(PASSED[name], own=frozenset({"_mine", "_own", "_x"})) == []


def test_a_finding_names_file_line_and_what() -> None:
    source = textwrap.dedent(
        """\
        import asyncio as aio

        def enter(task):
            return aio.tasks._current_tasks, task._coro
        """
    )
    assert check_source(source, "pkg/m.py") == [
        "pkg/m.py:4: reaches the private asyncio.tasks._current_tasks",
        "pkg/m.py:4: uses asyncio's private attribute _coro of a loop/task/future",
    ]

"""The limiter's state seam is public (issue 12, item 4): the protocols of
``aioresilience.abc`` name no private member, every store implements them, and no module of
``aioresilience/stores`` touches a private member of a limiter (read from the AST, so a
store written tomorrow is checked too)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from dictstore_limits import DictLimiterStore

import aioresilience
from aioresilience import RateLimiter
from aioresilience import _ratelimit as ratelimit_module
from aioresilience._core.token_bucket import TokenBucketAlgorithm
from aioresilience.abc import LimiterOptions, LimiterState, LimiterStore
from aioresilience.stores.redis import RedisStore

PACKAGE = Path(aioresilience.__file__).parent


def _protocol_members(protocol: type) -> set[str]:
    return {
        name
        for name in vars(protocol)
        if not (name.startswith("__") and name.endswith("__"))
        and name != "_is_protocol"
        and not name.startswith("_abc_")
    }


@pytest.mark.parametrize("protocol", [LimiterState, LimiterStore])
def test_the_protocols_name_no_private_member(protocol: type) -> None:
    members = _protocol_members(protocol)
    assert members, protocol
    assert not {name for name in members if name.startswith("_")}, members


@pytest.mark.parametrize("store_type", [RedisStore, DictLimiterStore])
def test_every_store_offers_the_protocol(store_type: type) -> None:
    assert callable(getattr(store_type, "bind_limiter", None))


def test_every_state_offers_the_protocol() -> None:
    members = _protocol_members(LimiterState)
    for state in (
        DictLimiterStore().bind_limiter(_options()),
        RedisStore("redis://127.0.0.1:1", prefix="seam").bind_limiter(_options()),
    ):
        missing = {name for name in members if not hasattr(state, name)}
        assert not missing, (type(state).__name__, missing)
        assert state.limit == 5


def _options() -> LimiterOptions:
    return LimiterOptions(
        name="seam",
        kind="TokenBucket",
        algorithm=TokenBucketAlgorithm(5, 1.0),
        on_store_failure=lambda policy, error: None,
    )


def _limiter_privates() -> set[str]:
    """Every private member name of the limiter front-ends (slots, methods, class attributes)."""
    names: set[str] = set()
    for _, cls in inspect.getmembers(ratelimit_module, inspect.isclass):
        if cls.__module__ == ratelimit_module.__name__ and issubclass(
            cls, RateLimiter | ratelimit_module.KeyedLimit
        ):
            for klass in cls.__mro__:
                if klass.__module__.startswith("aioresilience"):
                    names |= set(getattr(klass, "__slots__", ())) | set(vars(klass))
    return {n for n in names if n.startswith("_") and not n.endswith("__")}


def _own_privates(tree: ast.Module) -> set[str]:
    """Private names a module defines on its own objects (``self._x = ...``, ``def _x``,
    slots): a store's own ``_lines`` is no limiter's."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {n for n in names if n.startswith("_")}


def private_limiter_access(source: str, privates: set[str]) -> list[str]:
    """``x._name`` with ``x`` not ``self`` where ``_name`` is a limiter's private member:
    always when ``x`` reads as a limiter (``limiter``, ``self.limiter``, ``fallback``),
    else unless the module defines ``_name`` on objects of its own or ``x`` reads as a
    breaker."""
    tree = ast.parse(source)
    own = _own_privates(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr in privates):
            continue
        base = ast.unparse(node.value)
        if base in ("self", "cls") or "breaker" in base.lower():
            continue  # a breaker's members are the breaker seam's test's (several share names)
        named_limiter = "limiter" in base.lower() or "fallback" in base.lower()
        if named_limiter or node.attr not in own:
            found.append((node.lineno, f"line {node.lineno}: {ast.unparse(node)}"))
    return [text for _, text in sorted(found)]


def test_the_checker_finds_what_the_old_redis_store_did() -> None:
    privates = _limiter_privates()
    assert {"_algorithm", "_admit", "_store_failures", "_emit"} <= privates
    old = (
        "class RedisLimit:\n"
        "    def __init__(self, limiter):\n"
        "        self._lines = {}\n"
        "        self.script = _script_for(limiter._algorithm)\n"
        "    def note(self):\n"
        "        self.limiter._store_failures += 1\n"
        "        self._lines.clear()\n"
        "    async def fall_back(self, fallback, key):\n"
        "        await fallback._admit(key, 1, 0.0)\n"
    )
    assert private_limiter_access(old, privates) == [
        "line 4: limiter._algorithm",
        "line 6: self.limiter._store_failures",
        "line 9: fallback._admit",
    ]


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.joinpath("stores").rglob("*.py")), ids=lambda p: p.name
)
def test_no_store_touches_a_private_member_of_a_limiter(path: Path) -> None:
    assert private_limiter_access(path.read_text(), _limiter_privates()) == []

"""What the store's pieces share, below all of them: the scripts (:data:`SCRIPTS`, one
:class:`_Script` per Lua program, and how to give a decision back), the shape of a script's
arguments (:data:`Args`), the failure policies, and the rule for names that live in Redis.

A leaf: it imports no other module of the store, so the store (``_store``), its round trips
(``_batcher``) and the views bound to it (``_limits``, ``_breaker``) all import it, one way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib import resources
from typing import Any, Final, Literal

__all__ = ["SCRIPTS", "Args", "FailurePolicy", "shared_name"]

FailurePolicy = Literal["allow", "deny", "local"]
Args = tuple[str, int, float | str, float | str, float]  # five script arguments per key


class _Script:
    """One Lua script and how to read it: ``width`` reply values per key, and ``refund``,
    which turns a decision's arguments and reply into the operation that gives it back."""

    __slots__ = ("name", "refund", "sha", "source", "width")

    def __init__(
        self,
        name: str,
        files: tuple[str, ...],
        refund: Callable[[Args, list[Any]], Args],
        width: int = 5,
    ) -> None:
        def read(file: str) -> str:
            return resources.files(__package__).joinpath(file).read_text(encoding="utf-8")

        self.name = name
        self.source = "\n".join(read(file) for file in files)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        self.refund = refund
        self.width = width


def _limiter_refund(args: Args, values: list[Any]) -> Args:
    # ("r", cost, p1, p2, the server time of the admission being given back)
    return ("r", args[1], args[2], args[3], values[-1])


def _breaker_refund(args: Args, values: list[Any]) -> Args:
    # ("r", -, the generation the probe lease was granted in, config, -)
    return ("r", 0, values[2], args[3], 0)


SCRIPTS: Final = {
    name: _Script(name, ("_common.lua", f"{name}.lua", "_driver.lua"), _limiter_refund)
    for name in ("gcra", "fixed_window", "sliding_window_log", "sliding_window_counter")
}
SCRIPTS["breaker"] = _Script("breaker", ("_common.lua", "breaker.lua"), _breaker_refund, width=6)


def shared_name(owner: Any, *, default: str | None, kind: str | None = None) -> None:
    """Check the name of a limiter or breaker (or of its options: a LimiterOptions names its
    kind, a breaker's is given as ``kind``) about to live in Redis, where it is the identity
    every process shares: given, and free of the characters keys are built with."""
    kind = kind or getattr(owner, "kind", type(owner).__name__)
    name = owner.name
    if name == default:
        raise TypeError(
            f"a {kind} on a RedisStore needs name=...: the name is its identity in Redis, "
            "shared by every process that uses it"
        )
    if not name.strip():
        # (A limiter given name="" reports its kind as its name, but its Redis key would be
        # `<prefix>:<algorithm>:{}`: one state for every such limiter, whatever its limit.)
        raise ValueError(
            f"a {kind} name on a RedisStore must not be empty or blank, got {name!r}: the "
            "name is its identity in Redis, shared by every process that uses it"
        )
    if any(char in name for char in "{}:"):
        raise ValueError(
            f"a {kind} name on a RedisStore must not contain {{, }} or :, got {name!r}"
        )

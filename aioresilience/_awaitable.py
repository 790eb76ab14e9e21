"""An already-finished awaitable, for ``__aenter__``/``__aexit__`` that need not suspend.

``async with`` only requires those methods to return awaitables. Returning this shared object
from a plain method skips creating and running a coroutine object on the path where the guard
admits at once, which is most of a cheap guard's cost.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

__all__ = ["DONE"]


class _Done:
    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]  # finishes at once, with value None

    def __repr__(self) -> str:
        return "<done>"


DONE = _Done()

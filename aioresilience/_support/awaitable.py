"""An already-finished awaitable, for ``__aenter__``/``__aexit__`` that need not suspend.

``async with`` only requires those methods to return awaitables. Returning one shared,
already-completed object from a plain method skips creating and running a coroutine object on
the path where the guard admits at once, which is most of a cheap guard's cost.

The object is an ``asyncio.Future`` holding the result ``None``: awaiting a finished future is
handled in C (a Python ``__await__`` costs twice as much), and never touches the future's loop,
so one instance serves every loop and thread. It is created against a stand-in loop because a
future needs one at construction; nothing ever schedules on it.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")

__all__ = ["DONE", "done"]


class _NoLoop:
    """The only loop method a Future calls when created."""

    def get_debug(self) -> bool:
        return False


def done(value: T) -> asyncio.Future[T]:
    """A finished awaitable holding ``value``, shareable like :data:`DONE` (make it once)."""
    future: asyncio.Future[T] = asyncio.Future(loop=_NO_LOOP)  # type: ignore[arg-type]
    future.set_result(value)
    return future


_NO_LOOP = _NoLoop()
DONE: asyncio.Future[None] = done(None)

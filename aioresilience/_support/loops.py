"""Which event loop a primitive's waiters wait on.

A primitive's waiters are futures of one event loop, woken by its own callbacks and, for a
limiter, by one timer. Kept across ``asyncio.run`` calls one after another, a primitive serves
each loop in turn (waiters of a closed loop can never resume: they are given up). Waited on from
two running loops at once (one per thread), one loop would set the other's futures from the
wrong thread and never wake it: its callers would stall with no error. So, as asyncio's own
locks and queues do, a second live loop is refused with a RuntimeError naming the primitive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["live_loop", "waiting", "waiting_loop"]


def live_loop(futures: Iterable[asyncio.Future[Any]]) -> asyncio.AbstractEventLoop | None:
    """The loop of the first of ``futures`` whose loop is not closed, if any (a waiter left
    on a closed loop may head the queue, with another loop's live waiters behind it)."""
    for future in futures:
        loop = future.get_loop()
        if not loop.is_closed():
            return loop
    return None


def waiting_loop(owner: str, busy: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    """The running loop, for a new waiter of ``owner``, whose waiters wait on ``busy`` (None
    when none waits); raises RuntimeError when ``busy`` is another loop that is not closed."""
    loop = asyncio.get_running_loop()
    if busy is not None and busy is not loop and not busy.is_closed():
        raise RuntimeError(
            f"{owner} has waiters on another event loop that is not closed (another thread's?): "
            "a primitive serves one event loop at a time, as asyncio's locks and queues do; "
            "make one per loop"
        )
    return loop


def waiting(future: asyncio.Future[Any]) -> bool:
    """Whether a waiter's ``future`` can still be handed a slot or an item: not done, and its
    loop not closed (a loop closed without cancelling its tasks leaves waiters that can never
    resume, and setting their result would raise and lose what was handed)."""
    return not future.done() and not future.get_loop().is_closed()

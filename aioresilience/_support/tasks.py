"""Stopping tasks a primitive started (hedges, a pool's workers)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: Collection[asyncio.Task[Any]], *, cancel: bool = True) -> None:
    """Cancel ``tasks`` and wait until every one has finished, even if the waiting itself is
    cancelled again (as a ``TaskGroup`` does): no task is left running behind its owner, and
    what they were doing is known when this returns. A cancellation of the caller meanwhile
    is raised afterwards. Their exceptions are retrieved (never "never retrieved").
    ``cancel=False`` only waits: for tasks an earlier call cancelled, still stopping (another
    cancellation would cut short the clean-up they run). The caller knows which those are:
    ``Task.cancelling()`` does not (it also counts a pending ``asyncio.timeout`` of the
    task's own, which turns its cancellation into a ``TimeoutError`` the task may carry on
    from)."""
    if cancel:
        for task in tasks:
            task.cancel()
    cancelled: asyncio.CancelledError | None = None
    while not all(task.done() for task in tasks):
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError as exc:
            cancelled = exc
    for task in tasks:
        if not task.cancelled():
            task.exception()
    if cancelled is not None:
        raise cancelled

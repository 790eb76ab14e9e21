"""Stopping tasks a primitive started (hedges, a pool's workers)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has finished, even if the waiting itself is
    cancelled again (as a ``TaskGroup`` does): no task is left running behind its owner, and
    what they were doing is known when this returns. A cancellation of the caller meanwhile
    is raised afterwards. Their exceptions are retrieved (never "never retrieved"). A task
    already being cancelled (by an earlier call, still waiting) is not cancelled again: that
    would cut short the clean-up it is running."""
    for task in tasks:
        if not task.cancelling():
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

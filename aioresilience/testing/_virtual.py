"""An asyncio event loop whose clock jumps instead of waiting.

When nothing is ready to run, a normal loop blocks in ``select()`` until the next timer is due.
This loop polls the selector without blocking and, if no I/O is ready, moves its clock forward
to that timer instead (the approach of the ``looptime`` plugin and of trio's ``MockClock`` with
autojump). So ``await asyncio.sleep(3600)`` returns at once with ``loop.time()`` exactly 3600
later, wake-up order is exact, and ``asyncio.timeout``/``wait_for`` expire in virtual time.

Limits, by design:

- Only the *loop's* clock is virtual. Code that reads ``time.monotonic()`` or ``time.time()``
  itself sees real time; aioresilience reads the loop's clock everywhere.
- The clock jumps whenever the loop has nothing to do, even if a thread or another process is
  about to answer; work that waits on them with a timeout can time out at once. Await such work
  without a timeout, or run it on a normal loop.
- uvloop keeps its clock inside libuv and cannot be made virtual; time-based tests run on this
  loop, and the same code then runs unchanged on uvloop in production.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _clock

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = ["VirtualClockSelector", "VirtualTimeLoop", "run"]

T = TypeVar("T")


class VirtualClockSelector(selectors.BaseSelector):
    """Wraps a real selector: never blocks while a timer is pending, advances the clock."""

    def __init__(self, loop: VirtualTimeLoop, inner: selectors.BaseSelector) -> None:
        self._loop = loop
        self._inner = inner

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._inner.select(0)
        if events or (timeout is not None and timeout <= 0):
            return events
        if timeout is None:
            # Nothing scheduled at all: only I/O (a thread finishing, a socket) can wake us.
            return self._inner.select(None)
        self._loop.advance(timeout)
        return []

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._inner.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock that starts at ``start`` seconds."""

    def __init__(self, start: float = 0.0) -> None:
        self._virtual_now = float(start)
        super().__init__(VirtualClockSelector(self, selectors.DefaultSelector()))
        # Tell the front-ends to read clocks from loops while this one exists.
        _clock.register_loop_clock()
        self._clock_registered = True

    def close(self) -> None:
        super().close()
        if self._clock_registered:
            self._clock_registered = False
            _clock.unregister_loop_clock()

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0); timers now due run on the next turn."""
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self._virtual_now += seconds


def run(main: Coroutine[Any, Any, T], *, start: float = 0.0, debug: bool | None = None) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop` (like ``asyncio.run``)."""
    with asyncio.Runner(debug=debug, loop_factory=lambda: VirtualTimeLoop(start)) as runner:
        return runner.run(main)

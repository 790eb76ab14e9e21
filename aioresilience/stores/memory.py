"""Per-key state in process memory, bounded in time and in size (DESIGN rule 8).

Two generations of plain dicts, ``young`` and ``old``. A key is looked up in ``young``, then in
``old`` (and promoted to ``young`` when found there). Every ``period`` seconds the generations
rotate: ``old`` is discarded, ``young`` becomes ``old``. A key untouched for two rotations is
therefore forgotten, at least ``period`` after its last use; with ``period`` no shorter than the
algorithm's horizon its state was fresh by then, so forgetting it loses nothing.

Size: when ``young`` reaches half of ``max_keys`` a rotation happens early, so at most
``max_keys`` keys are ever live, and the keys forgotten first are those unused for longest
(a two-segment approximation of LRU that costs nothing on the hit path: no linked list, no
reordering). Keys the owner pins (those with a reservation pending) survive every rotation.

Why not an OrderedDict LRU: it doubles the bytes per key and costs a ``move_to_end`` per hit; the
two-generation scheme keeps a hit at one dict lookup and a key at one dict entry.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from typing import Any, Generic, TypeVar

from .._validation import finite_positive, positive_int

S = TypeVar("S")

__all__ = ["MemoryStore"]


class MemoryStore(Generic[S]):
    """Bounded per-key state for one limiter. ``max_keys`` caps live keys; idle keys are
    reclaimed after ``period`` to ``2 * period`` seconds."""

    __slots__ = ("_pinned", "_young_max", "max_keys", "old", "period", "rotate_at", "young")

    def __init__(
        self,
        *,
        max_keys: int = 100_000,
        period: float = 60.0,
        pinned: Collection[Hashable] | None = None,
    ) -> None:
        self.max_keys = positive_int("max_keys", max_keys)
        self.period = finite_positive("period", period)
        self.young: dict[Hashable, S] = {}
        self.old: dict[Hashable, S] = {}
        # Keys the owner still needs whatever their age (those with waiters): it passes a live
        # container (a dict it maintains) so pinning costs the store nothing.
        self._pinned: Collection[Hashable] = {} if pinned is None else pinned
        # Owners may read a key straight from `young` while `now < rotate_at` (a hit); any
        # other access goes through get() and put().
        self.rotate_at = -float("inf")
        # A full young generation (half the cap) rotates before a key is added to it.
        self._young_max = max(1, self.max_keys // 2)

    def __len__(self) -> int:
        return len(self.young) + len(self.old)

    def get(self, key: Hashable, now: float) -> S | None:
        """The state of ``key`` (``None``: fresh). Call :meth:`put` with the new state."""
        if now >= self.rotate_at:
            self._rotate(now)
        state = self.young.get(key)
        if state is None:
            state = self.old.pop(key, None)
            if state is not None:
                self._promote(key, state)
        return state

    def put(self, key: Hashable, state: S | None) -> None:
        young = self.young
        if state is None:
            young.pop(key, None)
            return
        if key not in young:
            young = self._make_room()
        young[key] = state

    def _make_room(self) -> dict[Hashable, S]:
        """Room in ``young`` for one more key within ``max_keys``; returns ``young``.

        The key about to be added is the most recently used, so room is made *before* it
        goes in: a full young generation becomes the old one (whose keys are then the first
        to go), and for tiny caps single old keys are dropped as well.
        """
        if len(self.young) >= self._young_max:
            self._rotate(None)
        old = self.old
        if len(self.young) + len(old) >= self.max_keys:  # only for a cap of 1, or many pins
            pinned = self._pinned
            for key in [k for k in old if k not in pinned]:
                del old[key]
                if len(self.young) + len(old) < self.max_keys:
                    break
        return self.young

    def touch(self, key: Hashable) -> None:
        """Count ``key``'s idle time from now (a reservation of it just came due)."""
        state = self.old.pop(key, None)
        if state is not None:
            self._promote(key, state)

    def _promote(self, key: Hashable, state: S) -> None:
        self._make_room()[key] = state

    def clear(self) -> None:
        self.young.clear()
        self.old.clear()

    def _rotate(self, now: float | None) -> None:
        old, young = self.old, self.young
        for key in self._pinned:
            if key in old and key not in young:
                young[key] = old[key]
        self.old, self.young = young, {}
        if now is not None:
            self.rotate_at = now + self.period

    def snapshot(self) -> dict[Hashable, Any]:
        """A copy of every live state (for tests and debugging)."""
        return {**self.old, **self.young}

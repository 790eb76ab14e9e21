"""Per-key state in process memory, bounded in time and in size (DESIGN rule 8): the pure
structure behind every in-memory limiter (``aioresilience.stores.MemoryStore`` is this
structure with its construction checks).

Two generations of plain dicts, ``young`` and ``old``, each of at most ``max_keys`` keys. A key
is looked up in ``young``, then in ``old`` (and promoted to ``young`` when found there). A
*rotation* discards ``old`` and makes ``young`` the old generation. It happens when a key is
about to enter a full ``young`` (size), or ``period`` seconds after the previous rotation of
either kind (time).

What that guarantees, exactly:

- **Recency.** A key keeps its state until more than ``max_keys`` *other* distinct keys have
  been used since its last use: between that use and the rotation that drops it, a whole
  ``young`` generation (``max_keys`` keys) filled and one more key arrived. So every key an
  LRU cache of ``max_keys`` entries would still hold is held here.
- **Idleness.** A time-based rotation only drops keys untouched since the rotation before it,
  so at least ``period`` seconds ago; with ``period`` no shorter than the algorithm's horizon
  their state was fresh by then, and forgetting it loses nothing. A time rotation can never
  follow a size rotation closely and drop recent keys: every rotation restarts the period.
- **Size.** At most ``2 * max_keys`` keys are held (the price of the recency guarantee without
  an LRU list); keys with waiters are held by the limiter, outside the store.

Why not an OrderedDict LRU: it costs a ``move_to_end`` on every hit and a linked-list node per
key; here a hit is one dict lookup and a key is one dict entry.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

S = TypeVar("S")

__all__ = ["MAX_KEYS", "KeyStore"]

MAX_KEYS = 2**40  # beyond any memory; a larger int is a mistake (or 10**400)


class KeyStore(Generic[S]):
    """Bounded per-key state for one limiter: see the module docstring for what ``max_keys``
    and ``period`` guarantee. Like every ``_core`` structure it trusts its arguments (an
    ``int`` >= 1 and a finite number > 0): its owners check them."""

    __slots__ = ("max_keys", "old", "period", "rotate_at", "young")

    def __init__(self, *, max_keys: int = 100_000, period: float = 60.0) -> None:
        self.max_keys = max_keys
        self.period = period
        self.young: dict[Hashable, S] = {}
        self.old: dict[Hashable, S] = {}
        # Owners may read a key straight from `young` while `now < rotate_at` (a hit); any
        # other access goes through get() and put().
        self.rotate_at = -float("inf")

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
                self._room(now)[key] = state
        return state

    def put(self, key: Hashable, state: S | None, now: float) -> None:
        """Store the new state of ``key`` (``None``: forget it), used at ``now``."""
        if now >= self.rotate_at:  # (a key given back after a long wait, say)
            self._rotate(now)
        young = self.young
        if state is None:
            young.pop(key, None)
            self.old.pop(key, None)
        elif key in young:
            young[key] = state
        else:
            self.old.pop(key, None)
            self._room(now)[key] = state

    def pop(self, key: Hashable) -> S | None:
        """Remove ``key`` and return its state (its owner keeps it elsewhere for a while)."""
        state = self.young.pop(key, None)
        old = self.old.pop(key, None)
        return old if state is None else state

    def _room(self, now: float) -> dict[Hashable, S]:
        """``young``, with room for one more key: a full one rotates first (the key about to
        enter is the most recently used, so it lands in the new generation)."""
        if len(self.young) >= self.max_keys:
            self._rotate(now)
        return self.young

    def clear(self) -> None:
        self.young.clear()
        self.old.clear()

    def _rotate(self, now: float) -> None:
        self.old, self.young = self.young, {}
        self.rotate_at = now + self.period

    def snapshot(self) -> dict[Hashable, Any]:
        """A copy of every live state (for tests and debugging)."""
        return {**self.old, **self.young}

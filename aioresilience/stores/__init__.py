"""State backends for the stateful guards: in memory (the default, :mod:`.memory`), and on
Redis for state shared by many processes (:mod:`.redis`, extra ``redis``; imported only when
asked for)."""

from .memory import MemoryStore

__all__ = ["MemoryStore"]

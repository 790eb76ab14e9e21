"""State backends for the stateful guards: in memory (the default); Redis arrives as an extra."""

from .memory import MemoryStore

__all__ = ["MemoryStore"]

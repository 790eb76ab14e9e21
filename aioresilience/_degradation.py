"""Graceful degradation: :class:`GracefulDegradation` serves from the richest :class:`Tier`
(full, basic, cached...) the current value of a load signal (:mod:`._signals`) allows."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._signals import _fed, _read
from ._support.listeners import logger
from ._support.predicates import is_async_callable, sync_callable
from ._support.validation import number, text

__all__ = ["GracefulDegradation", "Tier"]

T = TypeVar("T")


@dataclass(frozen=True)
class Tier(Generic[T]):
    """One level of service: ``handler`` (a coroutine function) serves while the signal is at
    most ``up_to`` (a finite number; ``None``: without bound — the last tier)."""

    name: str
    handler: Callable[..., Awaitable[T]]
    up_to: float | None = None

    def __post_init__(self) -> None:
        text("name", self.name)
        if not is_async_callable(self.handler):
            raise TypeError(
                f"tier {self.name!r} handler must be a coroutine function, got {self.handler!r}"
            )
        if self.up_to is not None and math.isinf(number("up_to", self.up_to)):
            raise ValueError(f"up_to must be a finite number or None, got {self.up_to!r}")


class GracefulDegradation(Generic[T]):
    """Serve from the richest tier the current load allows.

    ``GracefulDegradation(signal, [Tier("full", full, up_to=0.7), Tier("basic", basic,
    up_to=0.9), Tier("cached", cached)])``: ``await degradation.call(*args)`` reads the signal
    and runs the first tier whose ``up_to`` is not exceeded. With ``fall_through=True`` (the
    default) a tier that raises hands the call to the next, cheaper tier.

    ``signal=None``: the load is the last value given to :meth:`update_system_load` (the seed
    guide's way; 0 until then).
    """

    def __init__(
        self,
        signal: Callable[[], float] | None,
        tiers: Sequence[Tier[T]],
        *,
        fall_through: bool = True,
        name: str | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "GracefulDegradation"
        if signal is not None:
            sync_callable("signal", signal)  # read on every call, never awaited
        if not isinstance(tiers, Sequence) or isinstance(tiers, str):
            raise TypeError(f"tiers must be a list of Tier, got {tiers!r}")
        if not tiers:
            raise ValueError("tiers must not be empty")
        for tier in tiers:
            if not isinstance(tier, Tier):
                raise TypeError(f"tiers must be a list of Tier, got {tier!r} among them")
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            # `served` counts by name: two tiers of one name would share a count.
            raise ValueError(f"tiers must have distinct names, got {names!r}")
        if not isinstance(fall_through, bool):
            raise TypeError(f"fall_through must be a bool, got {fall_through!r}")
        bounds = [t.up_to for t in tiers]
        if any(b is None for b in bounds[:-1]):
            raise ValueError("only the last tier may have up_to=None")
        finite = [b for b in bounds if b is not None]
        if finite != sorted(finite) or len(set(finite)) != len(finite):
            raise ValueError(f"tiers must have increasing up_to bounds, got {bounds!r}")
        if bounds[-1] is not None:
            raise ValueError("the last tier must have up_to=None, so every load has a tier")
        self._load = 0.0
        self._pushed = signal is None
        self._signal: Callable[[], float] = signal if signal is not None else self._pushed_load
        self._fed = _fed(signal)
        self._tiers = tuple(tiers)
        self._fall_through = fall_through
        self.served: dict[str, int] = {t.name: 0 for t in tiers}

    def _pushed_load(self) -> float:
        return self._load

    def update_system_load(self, load: float) -> None:
        """The seed guide's push-style signal: the load the next calls are served at. Only
        for a degradation built with ``signal=None`` (else the signal is read)."""
        if not self._pushed:
            raise TypeError(f"{self.name} reads its signal; build it with signal=None to push")
        self._load = number("load", load)

    def tier(self) -> Tier[T]:
        """The tier the current load selects."""
        load = _read(self._signal)
        for tier in self._tiers:
            if tier.up_to is None or load <= tier.up_to:
                return tier
        return self._tiers[-1]  # pragma: no cover - the last tier is unbounded

    async def call(self, *args: Any, **kwargs: Any) -> T:
        chosen = self.tier()
        fed = self._fed
        if fed is None:
            return await self._serve(chosen, args, kwargs)
        token = fed._begin(by_guard=True)
        try:
            result = await self._serve(chosen, args, kwargs)
        except BaseException as exc:
            fed._end(token, exc)
            raise
        fed._end(token)
        return result

    async def _serve(self, chosen: Tier[T], args: Any, kwargs: Any) -> T:
        index = self._tiers.index(chosen)
        last_error: Exception | None = None
        for tier in self._tiers[index:]:
            try:
                result = await tier.handler(*args, **kwargs)
            except Exception as exc:
                if not self._fall_through:
                    raise
                logger.info("%s: tier %r failed, degrading further: %r", self.name, tier.name, exc)
                last_error = exc
                continue
            self.served[tier.name] += 1
            return result
        assert last_error is not None
        raise last_error

    def __repr__(self) -> str:
        tiers = [t.name for t in self._tiers]
        return f"<GracefulDegradation {self.name!r} tiers={tiers} served={self.served}>"

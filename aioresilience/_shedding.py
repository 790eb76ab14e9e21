"""Load shedding: :class:`LoadShedder` refuses calls by :class:`Priority` while a load signal
(:mod:`._signals`) is above the priority's threshold."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, ParamSpec, TypeVar

from ._signals import InFlight, LatencyEWMA, _fed, _read
from ._support.compose import Core, Strategy
from ._support.errors import LoadShed
from ._support.events import CallRejected, EventSource
from ._support.guard import GuardForms, ticket_stack
from ._support.predicates import sync_callable
from ._support.validation import finite_positive, number, text

__all__ = ["CallShed", "LoadShedStrategy", "LoadShedder", "Priority"]


P = ParamSpec("P")
T = TypeVar("T")


class Priority(enum.IntEnum):
    """Shed order: SHEDDABLE first, then NORMAL; CRITICAL only past its own threshold."""

    CRITICAL = 0
    NORMAL = 1
    SHEDDABLE = 2


def check_priority(priority: Any) -> Priority:
    """``priority`` if it is a :class:`Priority`, else a TypeError (a str or an int would
    never be shed: nothing matches it)."""
    if priority.__class__ is not Priority:
        raise TypeError(
            "priority must be a Priority (Priority.CRITICAL, Priority.NORMAL or "
            f"Priority.SHEDDABLE), got {priority!r}"
        )
    return priority


@dataclass(frozen=True, slots=True, kw_only=True)
class CallShed(CallRejected):
    """A call of ``priority`` (its name) was shed at ``load``."""

    name: ClassVar[str] = "shed"

    priority: str
    load: float


class LoadShedder(GuardForms, EventSource):
    """Refuse work by priority while a load signal is high.

    ``thresholds`` maps each priority to the signal value above which it is shed (default:
    SHEDDABLE above 0.7, NORMAL above 0.9, CRITICAL never; ``inf``: never; a priority left
    out: where the next more important one given is shed, never if none is). A shed call
    raises :class:`LoadShed` with ``retry_after``.

    ``async with shedder:``, ``@shedder`` and ``await shedder.call(fn, ...)`` run at NORMAL
    priority; ``shedder.limit(priority)`` is the same guard at another priority.
    """

    def __init__(
        self,
        signal: Callable[[], float],
        *,
        thresholds: Mapping[Priority, float] | None = None,
        retry_after: float = 1.0,
        name: str | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "LoadShedder"
        sync_callable("signal", signal)  # read on every check, never awaited
        limits = (
            {Priority.SHEDDABLE: 0.7, Priority.NORMAL: 0.9} if thresholds is None else thresholds
        )
        if not isinstance(limits, Mapping):
            raise TypeError(f"thresholds must be a mapping of Priority to number, got {limits!r}")
        for priority, value in limits.items():
            if not isinstance(priority, Priority):
                raise TypeError(f"thresholds keys must be Priority members, got {priority!r}")
            number(f"threshold for {priority.name}", value)
        ordered = [limits[p] for p in sorted(limits, reverse=True)]  # SHEDDABLE first
        if ordered != sorted(ordered):
            raise ValueError(
                "thresholds must not shed a higher priority before a lower one, got "
                f"{ {p.name: v for p, v in limits.items()} }"
            )
        self._signal = signal
        self._fed = _fed(signal)
        # The ticket is the fed signal's token (an InFlight... the shedder feeds itself).
        self._keeps_ticket = self._fed is not None
        self._tickets = ticket_stack(f"shedder.{self.name}")
        self._at_priority: dict[Priority, _AtPriority] = {}  # limit(priority), made once
        # Every priority has an entry (None: never shed), so a lookup is the whole check. A
        # priority left out is shed where the next more important one given is (None if
        # none is): less important work is never shed after more important work
        # ({NORMAL: 0.9} alone sheds SHEDDABLE work at 0.9 too, not never).
        self._thresholds: dict[Priority, float | None] = {}
        inherited: float | None = None
        for p in sorted(Priority):  # CRITICAL first
            if p in limits:
                inherited = float(limits[p])
            self._thresholds[p] = inherited
        self.retry_after = finite_positive("retry_after", retry_after)
        self.shed: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self._events = None

    def __repr__(self) -> str:
        shed = {p.name: n for p, n in self.shed.items()}
        return f"<LoadShedder {self.name!r} load={_read(self._signal):.3g} shed={shed}>"

    @property
    def feeds(self) -> InFlight | LatencyEWMA | None:
        """The signal this shedder feeds with the calls it admits (from after its check to
        their end): the :class:`~aioresilience.InFlight` or
        :class:`~aioresilience.LatencyEWMA` it was given, else None (a signal that measures
        itself). Code running calls this shedder does not see can feed the same signal
        with them through its :meth:`~aioresilience.InFlight.core`."""
        return self._fed  # type: ignore[return-value]

    def check(self, priority: Priority = Priority.NORMAL) -> None:
        """Raise :class:`LoadShed` if ``priority`` is shed at the current load."""
        threshold = self._thresholds[check_priority(priority)]
        if threshold is None:
            return
        load = _read(self._signal)
        if load > threshold:
            self.shed[priority] += 1
            self._emit(CallShed, priority=priority.name, load=load)
            raise LoadShed(
                f"{self.name}: shedding {priority.name} work (load {load:.3g} > {threshold:g})",
                retry_after=self.retry_after,
            )

    # -- the guard's core ---------------------------------------------------------------------

    def _enter(self) -> Any:
        return self._admit(Priority.NORMAL)

    def _admit(self, priority: Priority) -> Any:
        """Check ``priority``, then start feeding the signal for this call: the ticket."""
        self.check(priority)
        fed = self._fed
        return None if fed is None else fed._begin(by_guard=True)

    def _exit(self, ticket: Any, exc: BaseException | None, result: Any) -> None:
        if ticket is not None:
            self._fed._end(ticket, exc)  # type: ignore[union-attr]

    def limit(self, priority: Priority = Priority.NORMAL) -> GuardForms:
        """This shedder at ``priority``: a decorator (``@shedder.limit(Priority.CRITICAL)``),
        ``async with`` and ``call`` like the shedder itself."""
        priority = check_priority(priority)
        # One guard per priority, made once: each has its own ticket stack (a ContextVar),
        # and a new one per call would be a new variable in every task that enters it.
        at = self._at_priority.get(priority)
        if at is None:
            at = self._at_priority[priority] = _AtPriority(self, priority)
        return at


class _AtPriority(GuardForms):
    """A shedder's guard at one priority (:meth:`LoadShedder.limit`)."""

    def __init__(self, shedder: LoadShedder, priority: Priority) -> None:
        self.name = shedder.name
        self._shedder, self._priority = shedder, priority
        self._keeps_ticket = shedder._keeps_ticket
        self._tickets = ticket_stack(f"shedder.{shedder.name}.{priority.name}")
        self._exit = shedder._exit  # type: ignore[method-assign]

    def _enter(self) -> Any:
        return self._shedder._admit(self._priority)


class LoadShedStrategy(Strategy):
    """A pipeline's load shedding (``PipelineBuilder.load_shed``) at one priority."""

    kind = "load_shed"

    def __init__(self, shedder: LoadShedder, priority: Priority) -> None:
        super().__init__(shedder.name)
        self.shedder, self.priority = shedder, check_priority(priority)

    def core(self) -> Core:
        shedder = self.shedder
        # The shedder feeds the signal it owns (an InFlight...) between enter and exit.
        exit = None if shedder._fed is None else shedder._exit
        return functools.partial(shedder._admit, self.priority), exit

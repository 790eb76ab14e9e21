"""The modelled world a simulated pipeline talks to: who calls (arrivals) and what answers
(the dependency).

Both are plain synchronous models that take ``now`` and a seeded ``random.Random``, in the
style of ``aioresilience._core``; the engine turns their answers into sleeps on the virtual
clock. So they can be checked against queueing theory directly (tests/test_sim_theory.py
drives :class:`Dependency` with no event loop at all).
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ArrivalSpec",
    "Burst",
    "Dependency",
    "DependencyError",
    "DependencyOverloaded",
    "DependencySpec",
    "DependencyUnavailable",
    "Diurnal",
    "LatencySpec",
    "Outage",
    "PoissonArrivals",
    "QuotaExceeded",
    "QuotaSpec",
    "Spike",
]


# -- what the dependency answers when it fails ------------------------------------------------


class DependencyError(Exception):
    """The modelled dependency failed the call (an HTTP 500)."""


class DependencyUnavailable(DependencyError):
    """The dependency is down (an outage): connection refused, or no answer at all."""


class DependencyOverloaded(DependencyError):
    """The dependency's wait queue is full: it refuses at once (an HTTP 503)."""


class QuotaExceeded(DependencyError):
    """The dependency's quota is spent (an HTTP 429). ``retry_after`` is the ``Retry-After``
    header's value: seconds until the quota's window renews. :class:`aioresilience.Retry`
    reads this attribute and waits at least that long before its next attempt."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# -- arrivals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """Between ``start`` and ``end`` (seconds) the arrival rate is multiplied by ``factor``."""

    start: float
    end: float
    factor: float


@dataclass(frozen=True)
class Diurnal:
    """A daily curve compressed to ``period`` seconds: the rate is multiplied by
    ``1 + amplitude * sin(2π (t / period + phase))`` (``amplitude`` in [0, 1))."""

    amplitude: float
    period: float
    phase: float = 0.0


@dataclass(frozen=True)
class ArrivalSpec:
    """Who calls: an open-loop Poisson stream at ``rate`` per second (shaped by ``bursts``
    and ``diurnal``), or ``users`` closed-loop users, each calling again ``think`` seconds
    (exponentially distributed) after its previous call ended."""

    kind: Literal["poisson", "closed"] = "poisson"
    rate: float = 100.0
    bursts: tuple[Burst, ...] = ()
    diurnal: Diurnal | None = None
    users: int = 0
    think: float = 1.0

    def rate_at(self, t: float) -> float:
        rate = self.rate
        diurnal = self.diurnal
        if diurnal is not None:
            rate *= 1.0 + diurnal.amplitude * math.sin(
                2.0 * math.pi * (t / diurnal.period + diurnal.phase)
            )
        for burst in self.bursts:
            if burst.start <= t < burst.end:
                rate *= burst.factor
        return rate

    def max_rate(self) -> float:
        """A bound on :meth:`rate_at` over all t (for thinning)."""
        rate = self.rate
        if self.diurnal is not None:
            rate *= 1.0 + self.diurnal.amplitude
        for burst in self.bursts:
            rate *= max(1.0, burst.factor)  # overlapping bursts multiply
        return rate

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _json_of(self)
        return data

    def with_rate(self, rate: float) -> ArrivalSpec:
        """The same shape at base ``rate`` per second."""
        return dataclasses.replace(self, rate=rate)

    @property
    def shaped(self) -> bool:
        return self.diurnal is not None or bool(self.bursts)


# The draws on every simulated call's path, as the random module makes them (the same floats
# from the same stream: a test holds them to it) in one frame instead of two or three: CPython's
# random.py has computed them this way since 3.11 at least.
_NV_MAGICCONST = 4 * math.exp(-0.5) / math.sqrt(2.0)  # random.NV_MAGICCONST


def exponential(random: Callable[[], float], rate: float) -> float:
    """``Random.expovariate(rate)``, from the stream's ``random``."""
    return -math.log(1.0 - random()) / rate


def lognormal(random: Callable[[], float], mu: float, sigma: float) -> float:
    """``Random.lognormvariate(mu, sigma)``: ``exp`` of Kinderman and Monahan's normal
    variate, as ``Random.normalvariate`` draws it."""
    log = math.log
    while True:
        u1 = random()
        u2 = 1.0 - random()
        z = _NV_MAGICCONST * (u1 - 0.5) / u2
        if z * z / 4.0 <= -log(u2):
            return math.exp(mu + z * sigma)


class PoissonArrivals:
    """Arrival times of a non-homogeneous Poisson process, by thinning (Lewis and Shedler,
    "Simulation of nonhomogeneous Poisson processes by thinning", 1979): candidates at the
    bound rate ``λ*``, each kept with probability ``λ(t)/λ*``. Unshaped: every candidate."""

    __slots__ = ("_bound", "_random", "_shaped", "_spec", "now")

    def __init__(self, spec: ArrivalSpec, rng: random.Random, start: float = 0.0) -> None:
        self._spec = spec
        self._shaped = spec.shaped
        self._random = rng
        self._bound = spec.max_rate()
        self.now = start

    def next(self) -> float:
        """The next arrival time (inf when the rate is 0 everywhere)."""
        bound = self._bound
        if bound <= 0:
            return math.inf
        random = self._random.random
        spec = self._spec
        t = self.now
        if not self._shaped:
            t = self.now = t + exponential(random, bound)
            return t
        while True:
            t += exponential(random, bound)
            if random() * bound < spec.rate_at(t):
                self.now = t
                return t


# -- the dependency ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencySpec:
    """Service time of one call at an idle server: ``exponential`` (mean ``mean``),
    ``lognormal`` (mean ``mean``, shape ``sigma``) or ``constant``."""

    distribution: Literal["exponential", "lognormal", "constant"] = "exponential"
    mean: float = 0.05
    sigma: float = 0.5

    def draw(self, rng: random.Random) -> float:
        if self.distribution == "exponential":
            return rng.expovariate(1.0 / self.mean)
        if self.distribution == "lognormal":
            # E[lognormal(mu, sigma)] = exp(mu + sigma^2 / 2): mu chosen so the mean is `mean`.
            return rng.lognormvariate(math.log(self.mean) - self.sigma**2 / 2.0, self.sigma)
        return self.mean


@dataclass(frozen=True)
class Outage:
    """Between ``start`` and ``end`` the dependency is down: ``mode="error"`` refuses each
    call at once, ``mode="hang"`` holds it ``hang`` seconds and then fails it, and
    ``mode="reset"`` holds every call until the dependency restarts at ``end``, when all of
    them fail at once (their connections reset): the synchronised failure behind a
    thundering herd."""

    start: float
    end: float
    mode: Literal["error", "hang", "reset"] = "error"
    hang: float = 30.0


@dataclass(frozen=True)
class Spike:
    """Between ``start`` and ``end`` the service time of a ``share`` of the calls (each call
    drawn at random; 1: all of them) is multiplied by ``factor`` and gets ``extra`` seconds
    added: a slow disk, a GC pause, a noisy neighbour."""

    start: float
    end: float
    factor: float = 1.0
    extra: float = 0.0
    share: float = 1.0


@dataclass(frozen=True)
class QuotaSpec:
    """At most ``limit`` calls per fixed window of ``period`` seconds; beyond it the
    dependency answers 429 with ``Retry-After`` = the time left in the window."""

    limit: int
    period: float


@dataclass(frozen=True)
class DependencySpec:
    """A dependency with ``servers`` parallel servers and one FIFO wait queue (an M/G/c
    queue under Poisson arrivals).

    - ``latency``: the service time at low load; past ``knee`` (utilisation, calls in the
      system per server) each call's service time is multiplied by
      ``1 + slowdown * (utilisation - knee)``: contention makes an overloaded server slower,
      which is what lets goodput collapse under overload (slowdown 0: no knee).
    - ``max_queue``: calls waiting beyond it are refused at once (503); None: unbounded.
    - ``error_rate``: the share of calls that fail (500) at the end of their service.
    - ``outages``, ``spikes``: windows of downtime and of slowness.
    - ``quota``: a 429 with Retry-After beyond ``limit`` calls per ``period``.
    - ``recovery``: after an outage, service is ``cold_factor`` times slower, the factor
      decaying linearly to 1 over ``recovery`` seconds (caches and pools warming up), so a
      recovering dependency has less capacity than a healthy one.
    - ``reject_latency``: how long a refusal (outage error, 503, 429) takes to arrive.
    """

    servers: int = 10
    latency: LatencySpec = field(default_factory=LatencySpec)
    knee: float = 1.0
    slowdown: float = 0.0
    max_queue: int | None = None
    error_rate: float = 0.0
    outages: tuple[Outage, ...] = ()
    spikes: tuple[Spike, ...] = ()
    quota: QuotaSpec | None = None
    recovery: float = 0.0
    cold_factor: float = 1.0
    reject_latency: float = 0.001

    def outage_at(self, t: float) -> Outage | None:
        for outage in self.outages:
            if outage.start <= t < outage.end:
                return outage
        return None

    def healthy_between(self, start: float, end: float) -> bool:
        """No outage overlaps ``[start, end)``."""
        return not any(o.start < end and start < o.end for o in self.outages)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _json_of(self)
        return data


def _json_of(value: Any) -> Any:
    """A frozen spec as JSON-safe data (tuples as lists, nested specs as objects)."""
    if hasattr(value, "__dataclass_fields__"):
        return {name: _json_of(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, tuple):
        return [_json_of(v) for v in value]
    return value


class Dependency:
    """The dependency's state during one run.

    :meth:`call` decides, at the moment a call arrives, when its answer comes back and what
    it is. With one FIFO queue and ``c`` servers, a call starts when the earliest server
    becomes free (its arrival time if one is idle now), so the heap of the servers' free times
    gives every start time exactly (the Lindley recursion generalised to c servers, as in
    Kiefer and Wolfowitz 1955). Work is never undone: a call the client gave up on keeps its
    server until its service ends, as a real server would.
    """

    __slots__ = (
        "_answering",
        "_busy_until",
        "_counts_in_system",
        "_draw",
        "_in_system",
        "_quota_count",
        "_quota_window",
        "_random",
        "_shaped",
        "spec",
    )

    def __init__(
        self, spec: DependencySpec, rng: random.Random, *, track_in_flight: bool = True
    ) -> None:
        self.spec = spec
        self._random = rng
        self._busy_until = [0.0] * spec.servers  # a heap: when each server is next free
        # End times of the calls queued or in service (a heap), kept only when the knee or
        # the queue bound needs the count.
        self._counts_in_system = bool(spec.slowdown) or spec.max_queue is not None
        self._in_system: list[float] = []
        # End times of every call not answered yet (a heap), for in_flight().
        self._answering: list[float] | None = [] if track_in_flight else None
        self._quota_window = -1
        self._quota_count = 0
        # Anything beyond a plain draw of the service time?
        self._shaped = bool(spec.slowdown or spec.spikes or (spec.recovery and spec.outages))
        latency = spec.latency
        self._draw: Callable[[], float]
        # LatencySpec.draw with its branch and constants taken once (the same floats): the
        # draw is on every call's path.
        if latency.distribution == "exponential":
            self._draw = functools.partial(exponential, rng.random, 1.0 / latency.mean)
        elif latency.distribution == "lognormal":
            mu = math.log(latency.mean) - latency.sigma**2 / 2.0
            self._draw = functools.partial(lognormal, rng.random, mu, latency.sigma)
        else:
            self._draw = functools.partial(latency.draw, rng)

    def in_flight(self, now: float) -> int:
        """Calls at the dependency now: queued, in service, hung, or about to be refused."""
        answering = self._answering
        if answering is None:
            raise RuntimeError("in_flight() needs Dependency(..., track_in_flight=True)")
        while answering and answering[0] <= now:
            heapq.heappop(answering)
        return len(answering)

    def call(self, now: float) -> tuple[float, float, Exception | None]:
        """A call arriving at ``now``: ``(answer time, wait in queue, error or None)``."""
        spec = self.spec
        if spec.outages:
            outage = spec.outage_at(now)
            if outage is not None:
                if outage.mode == "hang":
                    return self._answer(now + outage.hang), 0.0, DependencyUnavailable("no answer")
                if outage.mode == "reset":
                    return (
                        self._answer(outage.end),
                        0.0,
                        DependencyUnavailable("connection reset"),
                    )
                return (
                    self._answer(now + spec.reject_latency),
                    0.0,
                    DependencyUnavailable("connection refused"),
                )
        quota = spec.quota
        if quota is not None:
            window = math.floor(now / quota.period)
            if window != self._quota_window:
                self._quota_window, self._quota_count = window, 0
            if self._quota_count >= quota.limit:
                retry_after = (window + 1) * quota.period - now
                return (
                    self._answer(now + spec.reject_latency),
                    0.0,
                    QuotaExceeded("429 Too Many Requests", retry_after=retry_after),
                )
            self._quota_count += 1
        in_system = 0
        if self._counts_in_system:
            queue = self._in_system
            while queue and queue[0] <= now:
                heapq.heappop(queue)
            in_system = len(queue)
            if spec.max_queue is not None and in_system - spec.servers >= spec.max_queue:
                return (
                    self._answer(now + spec.reject_latency),
                    0.0,
                    DependencyOverloaded("503 Service Unavailable"),
                )
        service = self._draw()
        if self._shaped:
            service = self._shape(service, now, in_system)
        busy_until = self._busy_until
        start = busy_until[0]  # the server free first takes the call
        if start < now:
            start = now
        end = start + service
        heapq.heapreplace(busy_until, end)
        if self._counts_in_system:
            heapq.heappush(self._in_system, end)
        error = None
        if spec.error_rate and self._random.random() < spec.error_rate:
            error = DependencyError("500 Internal Server Error")
        answering = self._answering
        if answering is not None:  # (_answer, inline: once per call)
            heapq.heappush(answering, end)
        return end, start - now, error

    def _answer(self, at: float) -> float:
        if self._answering is not None:
            heapq.heappush(self._answering, at)
        return at

    def _shape(self, service: float, now: float, in_system: int) -> float:
        """The knee, slow recovery and spikes applied to a drawn service time."""
        spec = self.spec
        if spec.slowdown:
            utilisation = in_system / spec.servers
            if utilisation > spec.knee:
                service *= 1.0 + spec.slowdown * (utilisation - spec.knee)
        if spec.recovery and spec.cold_factor != 1.0:
            service *= self._cold(now)
        for spike in spec.spikes:
            if spike.start <= now < spike.end and (
                spike.share >= 1.0 or self._random.random() < spike.share
            ):
                service = service * spike.factor + spike.extra
        return service

    def _cold(self, now: float) -> float:
        """The slow-recovery factor: ``cold_factor`` right after an outage, down to 1 after
        ``recovery`` seconds."""
        spec = self.spec
        factor = 1.0
        for outage in spec.outages:
            since = now - outage.end
            if 0 <= since < spec.recovery:
                factor = max(
                    factor, spec.cold_factor - (spec.cold_factor - 1.0) * since / spec.recovery
                )
        return factor

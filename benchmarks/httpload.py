"""An in-repo HTTP/1.1 load loop over asyncio streams, for the web benchmarks and tests.

Cheap on purpose: the measurements are of the *server* (its CPU time from /proc, or the
latency its queue adds), so the client must cost as little as possible on machines whose two
cores it shares with the server. Keep-alive connections, plain ``GET``, responses read by
``Content-Length`` or chunked (without trailers); a response with neither is an error, not
silently misread.

- :class:`Connection`: one keep-alive connection, ``await conn.get(path) -> (status, headers)``.
- :func:`closed_loop`: ``n`` requests over ``concurrency`` connections, each sending the next
  as soon as the last answered (server-CPU benchmarks: a fixed number of requests).
- :func:`open_loop`: requests arriving at a fixed rate whatever the server does (a seeded
  Poisson process), each on an idle pooled connection or a new one, with its latency: the
  overload measurements (a closed loop slows down with the server and so hides its queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field


class Connection:
    """One keep-alive HTTP/1.1 connection to ``host:port``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def get(self, path: str, headers: bytes = b"") -> tuple[int, dict[bytes, bytes]]:
        """Send ``GET path``, read the whole response: ``(status, {lowercased name: value})``.
        ``headers``: extra raw header lines, each ending in CRLF."""
        self.writer.write(
            b"GET " + path.encode() + b" HTTP/1.1\r\nhost: 127.0.0.1\r\n" + headers + b"\r\n"
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        fields: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if b"content-length" in fields:
            await self.reader.readexactly(int(fields[b"content-length"]))
        elif fields.get(b"transfer-encoding") == b"chunked":
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)  # the chunk and its CRLF
            await self.reader.readuntil(b"\r\n")  # no trailers: the last CRLF
        else:
            raise ValueError(f"response to {path} has no length: {head!r}")
        return status, fields

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):  # the server may have dropped it first
            await self.writer.wait_closed()


async def closed_loop(
    port: int, path: str, n: int, *, concurrency: int = 4, host: str = "127.0.0.1"
) -> Counter[int]:
    """``n`` requests to ``path`` over ``concurrency`` keep-alive connections; status counts."""
    counts: Counter[int] = Counter()

    async def worker(share: int) -> None:
        conn = await Connection.open(host, port)
        try:
            for _ in range(share):
                status, _ = await conn.get(path)
                counts[status] += 1
        finally:
            await conn.close()

    shares = [n // concurrency + (i < n % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(worker(s) for s in shares if s))
    return counts


@dataclass
class Outcome:
    """One request of an open loop: when it was sent (s from the start), status, latency (s)."""

    sent: float
    status: int
    latency: float


@dataclass
class OpenLoopResult:
    outcomes: list[Outcome] = field(default_factory=list)
    duration: float = 0.0  # seconds the arrivals lasted

    def latencies(self, status: int, *, after: float = 0.0) -> list[float]:
        return sorted(o.latency for o in self.outcomes if o.status == status and o.sent >= after)

    def count(self, status: int, *, after: float = 0.0) -> int:
        return sum(1 for o in self.outcomes if o.status == status and o.sent >= after)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted ``values``, nearest rank."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


async def open_loop(
    port: int,
    path: str,
    *,
    rate: float,
    duration: float,
    seed: int = 0,
    host: str = "127.0.0.1",
) -> OpenLoopResult:
    """Requests at ``rate`` per second (exponential gaps from ``random.Random(seed)``) for
    ``duration`` seconds, each on an idle connection of a pool or a new one; waits for every
    answer. Arrivals are scheduled on absolute times, so a slow iteration does not lower the
    offered rate."""
    rng = random.Random(seed)
    idle: list[Connection] = []
    result = OpenLoopResult()
    tasks: list[asyncio.Task[None]] = []  # all kept: a failed request fails the loop
    start = time.perf_counter()

    async def one(sent: float) -> None:
        conn = idle.pop() if idle else await Connection.open(host, port)
        try:
            status, _ = await conn.get(path)
        except BaseException:
            await conn.close()
            raise
        result.outcomes.append(Outcome(sent, status, time.perf_counter() - start - sent))
        idle.append(conn)

    at = 0.0
    while at < duration:
        delay = start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(at)))
        at += rng.expovariate(rate)
    result.duration = duration
    try:
        await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(c.close() for c in idle))
    return result

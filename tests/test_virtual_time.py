"""The virtual-time loop: sleeps jump, order is exact, asyncio's timeouts fire on time."""

from __future__ import annotations

import asyncio
import time

import pytest

from aioresilience import _clock
from aioresilience.testing import VirtualTimeLoop, run


async def test_long_sleep_returns_at_once_with_exact_clock() -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    started = time.perf_counter()
    before = loop.time()
    await asyncio.sleep(3600)
    assert loop.time() - before == 3600
    assert time.perf_counter() - started < 0.5


async def test_wake_up_order_is_exact() -> None:
    loop = asyncio.get_running_loop()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        woke.append((name, loop.time()))

    await asyncio.gather(sleeper("c", 3.0), sleeper("a", 1.0), sleeper("b", 2.0))
    assert woke == [("a", 1.0), ("b", 2.0), ("c", 3.0)]


async def test_asyncio_timeout_fires_in_virtual_time() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(5):
            await asyncio.sleep(10)
    assert loop.time() == 5.0
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.sleep(10), 2)
    assert loop.time() == 7.0


async def test_io_still_works(virtual_clock: VirtualTimeLoop) -> None:
    assert virtual_clock is asyncio.get_running_loop()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with await asyncio.start_server(echo, "127.0.0.1", 0) as server:
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        writer.close()
        await writer.wait_closed()
    virtual_clock.advance(10)
    assert virtual_clock.time() == 10.0


def test_run_helper_and_start_time() -> None:
    async def main() -> float:
        await asyncio.sleep(5)
        return asyncio.get_running_loop().time()

    assert run(main(), start=100.0) == 105.0


def test_advance_rejects_negative() -> None:
    loop = VirtualTimeLoop()
    try:
        with pytest.raises(ValueError, match="seconds must be >= 0, got -1"):
            loop.advance(-1)
    finally:
        loop.close()


@pytest.mark.real_time
async def test_real_time_marker_uses_a_normal_loop() -> None:
    assert not isinstance(asyncio.get_running_loop(), VirtualTimeLoop)


def test_virtual_loops_switch_the_library_clock_while_they_exist() -> None:
    before = _clock._own_clock_loops
    loop = VirtualTimeLoop(start=50.0)
    try:
        assert _clock._own_clock_loops == before + 1
        assert _clock.now is _clock.loop_now

        async def read() -> float:
            return _clock.now()

        assert loop.run_until_complete(read()) == 50.0
    finally:
        loop.close()
        loop.close()  # closing twice unregisters once
    assert _clock._own_clock_loops == before
    if before == 0:
        assert _clock.now is time.monotonic

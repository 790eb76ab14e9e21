"""HTTP clients: client CPU per request, and a dead host then its recovery (the ``client`` group).

**CPU per request** (part ``client``): what a retry layer adds to a request that succeeds at
once. The client's CPU time (``time.process_time()`` of this process; the server runs in a
process of its own, ``python bench_client.py serve``: aiohttp.web answering ``200 ok``), read
before and after a fixed number of sequential GETs on one keep-alive loopback connection per
client, so neither the network nor the server counts. Every client is open at once; rounds
are interleaved (each case once per round, in a shuffled order); a case's overhead is the
median over rounds of its CPU per request minus its library's bare client in the same round.
Every case has the same retry policy: 3 attempts, exponential backoff from 10 ms, statuses
429 502 503 504 and transport errors retried. httpx: bare ``AsyncClient``, ours
(``ResilientTransport``), httpx-retries (``RetryTransport``), stamina (``@stamina.retry``
around a call that raises on a retried status); aiohttp: bare ``ClientSession``, ours
(``ResilientMiddleware``), aiohttp-retry (``RetryClient``). Ours twice: with its defaults
otherwise (``ours``: a breaker and a token budget per host, pacing on), and with the peers'
policy and nothing more (``ours, retry only``: no breaker, budget nor pacing). And per library
a layer that only forwards (an httpx transport, an aiohttp client middleware): the floor any
wrapper pays.

**A dead host, then its recovery** (part ``client_fault``): per case, a fresh client calls an
in-process aiohttp.web host that answers 503 to everything: 100 calls, one every 10 ms (each
one retried by its policy), then the host recovers and the calls go on until the first
success. Measured: requests the dead host received per call (amplification), the time from
its recovery to the first success, and the calls that failed. Ours: a breaker of 5
consecutive failures and a 0.5 s break; the targets are at most 1.2 requests per call and the
first success within one break (0.5 s) of the recovery.

Run: ``python benchmarks/bench_client.py [--quick]`` or ``python benchmarks/run.py --only
client``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import installed_versions  # noqa: E402
from tables import render  # noqa: E402

STATUSES = {429, 502, 503, 504}
ATTEMPTS = 3
FIRST_DELAY = 0.01
BREAK = 0.5  # ours, in the fault scenario
TARGET_US = 10.0
TARGET_AMPLIFICATION = 1.2
PEERS = ("httpx", "aiohttp", "httpx-retries", "aiohttp-retry", "stamina")
RETRY_ONLY = "ours, retry only"  # the peers' policy and nothing more

Send = Callable[[], Awaitable[None]]


# -- the server of the CPU part (its own process) --------------------------------------------


def serve() -> None:
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", ok)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


class Server:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "serve"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}/"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# -- the clients -------------------------------------------------------------------------------


def ours_options(kind: str, breaker: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ours: the common retry policy with the defaults otherwise (``ours``), or with nothing
    the peers lack (``ours, retry only``: no breaker, budget nor pacing)."""
    from aioresilience import exponential

    options: dict[str, Any] = {
        "retry": {"attempts": ATTEMPTS, "backoff": exponential(FIRST_DELAY)},
        "retry_statuses": STATUSES,
    }
    if kind == RETRY_ONLY:
        options.update(breaker=None, budget=None, pacing=False)
    elif breaker is not None:
        options["breaker"] = breaker
    return options


class PassThrough:
    """An httpx transport that only forwards (httpx's transport protocol, duck-typed: httpx
    is imported only where a case needs it): what any wrapping transport costs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def handle_async_request(self, request: Any) -> Any:
        return await self.inner.handle_async_request(request)

    async def __aenter__(self) -> PassThrough:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.inner.__aexit__(*exc_info)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def pass_through(request: Any, handler: Any) -> Any:
    """An aiohttp client middleware that only forwards: what aiohttp charges for any."""
    return await handler(request)


class RetriedStatus(Exception):
    """stamina retries on exceptions: a retried status becomes one."""


def canned_transport() -> Any:
    """An httpx transport that answers ``200 ok`` without any I/O (the no-network rows)."""
    import httpx

    class Canned(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=b"ok")

    return Canned()


@contextlib.asynccontextmanager
async def client(
    case: str, url: str, breaker: dict[str, Any] | None = None, canned: bool = False
) -> AsyncIterator[Send]:
    """``send()`` for one case: one GET of ``url``, its body read; a response whose status
    is in STATUSES after the retries raises (so that a fault run can count it). ``canned``:
    httpx over a transport that answers without I/O."""
    library, kind = case.split(" ", 1)
    if library == "httpx":
        import httpx

        inner = canned_transport() if canned else None
        transport: Any = inner
        if kind in ("ours", RETRY_ONLY):
            from aioresilience.integrations.httpx import ResilientTransport

            transport = ResilientTransport(inner, **ours_options(kind, breaker))
        elif kind == "pass-through":
            transport = PassThrough(inner or httpx.AsyncHTTPTransport())
        elif kind == "httpx-retries":
            import httpx_retries

            retry = httpx_retries.Retry(
                total=ATTEMPTS - 1, backoff_factor=FIRST_DELAY, status_forcelist=STATUSES
            )
            transport = httpx_retries.RetryTransport(inner, retry=retry)
        async with httpx.AsyncClient(transport=transport) as http:
            get = http.get

            async def send() -> None:
                response = await get(url)
                if response.status_code >= 500:
                    raise RetriedStatus(response.status_code)

            if kind == "stamina":
                import stamina
                import stamina.instrumentation

                # No logging hook: a log line per retry would be what the fault part measures.
                stamina.instrumentation.set_on_retry_hooks([])

                async def once() -> None:
                    response = await get(url)
                    if response.status_code in STATUSES:
                        raise RetriedStatus(response.status_code)

                send = stamina.retry(  # type: ignore[assignment]
                    on=(RetriedStatus, httpx.TransportError),
                    attempts=ATTEMPTS,
                    wait_initial=FIRST_DELAY,
                    timeout=None,
                )(once)
            yield send
    else:
        import aiohttp

        if kind == "aiohttp-retry":
            import aiohttp_retry

            options = aiohttp_retry.ExponentialRetry(
                attempts=ATTEMPTS,
                start_timeout=FIRST_DELAY,
                statuses=STATUSES,
                retry_all_server_errors=False,
            )
            session: Any = aiohttp_retry.RetryClient(retry_options=options)
        else:
            middlewares: tuple[Any, ...] = ()
            if kind in ("ours", RETRY_ONLY):
                from aioresilience.integrations.aiohttp import ResilientMiddleware

                middlewares = (ResilientMiddleware(**ours_options(kind, breaker)),)
            elif kind == "pass-through":
                middlewares = (pass_through,)
            session = aiohttp.ClientSession(middlewares=middlewares)
        async with session:
            get = session.get

            async def send() -> None:
                async with get(url) as response:
                    await response.read()
                    if response.status >= 500:
                        raise RetriedStatus(response.status)

            yield send


CASES = {
    "httpx": (
        "httpx bare",
        "httpx ours",
        f"httpx {RETRY_ONLY}",
        "httpx pass-through",
        "httpx httpx-retries",
        "httpx stamina",
    ),
    "aiohttp": (
        "aiohttp bare",
        "aiohttp ours",
        f"aiohttp {RETRY_ONLY}",
        "aiohttp pass-through",
        "aiohttp aiohttp-retry",
    ),
}
PEER_OF = {"httpx-retries": "httpx-retries", "stamina": "stamina", "aiohttp-retry": "aiohttp-retry"}


def missing(case: str) -> str | None:
    library, kind = case.split(" ", 1)
    for name in (library, PEER_OF.get(kind)):
        if name is None:
            continue
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            return f"{name} not installed (the bench dependency group)"
    return None


# -- CPU per request ---------------------------------------------------------------------------


async def cpu_rounds(
    url: str, n: int, rounds: int, warmup: int, seed: int, canned: bool = False
) -> list[dict[str, Any]]:
    cases = [c for cases in CASES.values() for c in cases if missing(c) is None]
    if canned:
        cases = [c for c in cases if c.startswith("httpx ")]
    samples: dict[str, list[float]] = {case: [] for case in cases}
    async with contextlib.AsyncExitStack() as stack:
        sends = {
            case: await stack.enter_async_context(client(case, url, canned=canned))
            for case in cases
        }
        for send in sends.values():
            for _ in range(warmup):
                await send()
        rng = random.Random(seed)
        for _ in range(rounds):
            order = cases[:]
            rng.shuffle(order)
            for case in order:
                send = sends[case]
                gc.collect()
                started = time.process_time()
                for _ in range(n):
                    await send()
                samples[case].append((time.process_time() - started) / n * 1e6)
    rows = []
    for case in cases:
        library = case.split(" ", 1)[0]
        us = samples[case]
        row: dict[str, Any] = {"case": case, "us_per_request": statistics.median(us)}
        base = samples.get(f"{library} bare")
        if base is not None and not case.endswith(" bare"):
            diffs = [a - b for a, b in zip(us, base, strict=True)]
            row["overhead_us"] = statistics.median(diffs)
            row["overhead_spread"] = [min(diffs), max(diffs)]
        if canned:
            row["case"] += " (no network)"
        rows.append(row)
    return rows


def cpu(quick: bool = False, seed: int = 14) -> dict[str, Any]:
    n, rounds, warmup = (300, 3, 100) if quick else (2_000, 9, 500)
    server = Server()
    try:
        rows = asyncio.run(cpu_rounds(server.url, n, rounds, warmup, seed))
    finally:
        server.stop()
    # The same httpx clients over a transport that answers without I/O: what each layer costs
    # with the network and the kernel (hundreds of us a request, swinging by as much between
    # rounds on a shared machine) out of the measure.
    local_n = 500 if quick else 5_000
    rows += asyncio.run(cpu_rounds("http://bench.invalid/", local_n, rounds, warmup, seed, True))
    over = {r["case"]: r["overhead_us"] for r in rows if "overhead_us" in r}
    targets = []
    for case in (
        "httpx ours",
        f"httpx {RETRY_ONLY}",
        "aiohttp ours",
        f"aiohttp {RETRY_ONLY}",
        "httpx ours (no network)",
        f"httpx {RETRY_ONLY} (no network)",
    ):
        ours = over.get(case)
        if ours is not None:
            verdict = "met" if ours <= TARGET_US else "NOT met"
            floor = over.get(case.replace(RETRY_ONLY, "ours").replace("ours", "pass-through"))
            also = "" if floor is None else f"; a layer doing nothing {floor:+.1f} us"
            targets.append(f"{case}: {ours:+.1f} us over bare ({verdict}: <= +10 us){also}")
    return {
        "kind": "client",
        "title": "HTTP clients: client CPU per request (us), GET on loopback, first attempt ok",
        "requests": n,
        "local_requests": local_n,
        "rounds": rounds,
        "rows": rows,
        "missing": {c: why for cs in CASES.values() for c in cs if (why := missing(c))},
        "versions": installed_versions(PEERS),
        "targets": targets,
    }


# -- a dead host, then its recovery --------------------------------------------------------------


class FlakyHost:
    """An aiohttp.web host answering 503 while ``down``, 200 after; counts what it receives."""

    def __init__(self) -> None:
        self.down = True
        self.hits_down = 0

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        if self.down:
            self.hits_down += 1
            return web.Response(status=503, text="down")
        return web.Response(text="ok")


async def fault_case(case: str, calls: int, spacing: float, limit: float) -> dict[str, Any]:
    from aiohttp import web

    host = FlakyHost()
    app = web.Application()
    app.router.add_get("/", host.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    failed = 0
    loop = asyncio.get_running_loop()
    try:
        async with client(
            case, url, breaker={"failure_threshold": 5, "break_duration": BREAK}
        ) as send:
            start = loop.time()
            for i in range(calls):
                await asyncio.sleep(max(0.0, start + i * spacing - loop.time()))
                try:
                    await send()
                except Exception:
                    failed += 1
            sent = host.hits_down
            host.down = False
            recovered = loop.time()
            first = None
            while loop.time() - recovered < limit:
                try:
                    await send()
                except Exception:
                    failed += 1
                    await asyncio.sleep(spacing)
                else:
                    first = loop.time() - recovered
                    break
    finally:
        await runner.cleanup()
    return {
        "case": case,
        "requests_per_call": sent / calls,
        "first_success_s": first,
        "failed_calls": failed,
    }


def fault(quick: bool = False) -> dict[str, Any]:
    calls, spacing, limit = 100, 0.01, 5.0
    rows = []
    for cases in CASES.values():
        for case in cases:
            # (a layer doing nothing retries nothing: nothing to measure there; ours without
            # a breaker retries as the peers do)
            skip = (" bare", " pass-through", RETRY_ONLY)
            if not case.endswith(skip) and missing(case) is None:
                rows.append(asyncio.run(fault_case(case, calls, spacing, limit)))
    targets = []
    for row in rows:
        if row["case"].endswith(" ours"):
            amp, first = row["requests_per_call"], row["first_success_s"]
            amp_ok = "met" if amp <= TARGET_AMPLIFICATION else "NOT met"
            first_ok = "met" if first is not None and first <= BREAK else "NOT met"
            targets.append(
                f"{row['case']}: {amp:.2f} requests per call to the dead host ({amp_ok}: <= "
                f"{TARGET_AMPLIFICATION}), first success "
                + ("never" if first is None else f"{first:.3f} s")
                + f" after the recovery ({first_ok}: <= one break, {BREAK} s)"
            )
    return {
        "kind": "client_fault",
        "title": "HTTP clients: a dead host (503), then its recovery",
        "calls": calls,
        "spacing_s": spacing,
        "break_s": BREAK,
        "rows": rows,
        "targets": targets,
    }


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        serve()
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fault", action="store_true", help="the fault part only")
    args = parser.parse_args()
    if not args.fault:
        print(render(cpu(args.quick)))
    print(render(fault(args.quick)))


if __name__ == "__main__":
    main()

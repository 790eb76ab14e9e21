"""The README's FastAPI / Starlette section runs as written: the protected app answers as the
text says, and the virtual-time recipe drives an hour of traffic in well under a second."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx

README = (Path(__file__).parent.parent / "README.md").read_text()


def block(marker: str) -> str:
    for text in re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL):
        if marker in text:
            return str(text)
    raise AssertionError(f"no python block in README.md contains {marker!r}")


async def test_the_protected_app_of_the_readme() -> None:
    namespace: dict[str, Any] = {}
    exec(block("@limit(ar.SlidingWindowLog"), namespace)
    transport = httpx.ASGITransport(app=namespace["app"], client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        items = [(await client.get("/items/1")).status_code for _ in range(6)]
        keyed = await client.get("/api/orders", headers={"x-api-key": "k"})
        health = await client.get("/health")
    assert items == [200] * 5 + [429]
    assert keyed.status_code == 200 and "per-key" in keyed.headers["ratelimit-policy"]
    assert "per-ip" in keyed.headers["ratelimit-policy"]  # the middleware's, merged
    assert health.status_code == 404 and "ratelimit" not in health.headers  # exempt


def test_the_virtual_time_recipe_runs_in_milliseconds() -> None:
    start = time.perf_counter()
    exec(block("an_hour_of_traffic"), {})  # asserts (300, 300) itself
    assert time.perf_counter() - start < 5.0  # an hour of virtual traffic (generous: CI)

"""examples/aiohttp_app.py runs against a real server on a loopback port and shows what it
claims (the lines that do not depend on the clock)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "aiohttp_app.py"


def test_the_aiohttp_example_limits_keys_sheds_and_calls_downstream() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    line = {text.split("->")[0].strip(): text.split("->", 1)[1].strip() for text in lines}
    assert line["GET /"].startswith('200 RateLimit: "per-ip";r=19;')
    assert line["GET /health"] == "200 (exempt)"
    assert line["GET /reports #3"].startswith('200 RateLimit: "per-key";r=0;')
    assert line["GET /reports #4"].startswith('429 RateLimit: "per-key";r=0;')
    assert "Retry-After:" in line["GET /reports #4"]
    assert line["GET /stock/kettle"].startswith("200") and "(2 downstream calls)" in lines[6]
    assert line["in flight"] == "0.75"
    shed, served = [text for text in lines if text.startswith("GET /expensive")]
    assert shed.startswith("GET /expensive   -> 503") and "Retry-After: 1" in shed
    assert served.startswith("GET /expensive   -> 200")
    assert line["held /slow"] == "['200', '200', '200']"
    ok, limited = (int(part.split()[0]) for part in line["20 x GET /"].split(","))
    # 11 requests spent of a burst of 20 refilled at 20 a minute: 9 more pass (10 if the
    # demo took over 3 s on a loaded machine), the rest are refused.
    assert ok + limited == 20 and 9 <= ok <= 10

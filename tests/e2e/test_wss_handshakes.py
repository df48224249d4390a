"""Thousands of abandoned Engine.IO handshakes against `solewatch run`: its memory comes back.

Each `GET /socket.io/?EIO=4&transport=polling` opens a session without any
token. The server must close the ones that never authenticate and give their
memory back; before that fix 4,000 of them kept 50 MB, 22,000 kept 260 MB,
for good.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from bench.common import process_rss_mb
from bench.handshakes import open_handshakes
from tests.helpers.process import SolewatchProcess

pytestmark = pytest.mark.slow

HANDSHAKES = 4000
# Short, so that the memory comes back soon after the last handshake (timeout, then a ping interval):
# opening the 4,000 takes longer than either, so the bound of 1,000 waiting sessions is still reached.
TIMEOUT_S = 2
PING_INTERVAL_S = 2


async def test_abandoned_handshakes_give_their_memory_back(tmp_path: Path) -> None:
    # The default bound on half-open sessions (1,000), a shorter handshake timeout.
    process = SolewatchProcess(
        tmp_path / "data",
        "run",
        log_path=tmp_path / "run.log",
        env={
            "SOLEWATCH_WSS_HANDSHAKE_TIMEOUT": str(TIMEOUT_S),
            "SOLEWATCH_WSS_PING_INTERVAL": str(PING_INTERVAL_S),  # sessions are freed at their first ping
            "SOLEWATCH_LOG_LEVEL": "info",
        },
    )
    process.start()
    try:
        assert process.proc is not None
        pid = process.proc.pid
        url = f"http://127.0.0.1:{process.http_port}"
        await asyncio.sleep(1.0)
        before = process_rss_mb(pid)

        statuses = await open_handshakes(url, HANDSHAKES)
        # Each one answered: a session (200), or a refusal while 1,000 wait (503).
        assert statuses[200] + statuses[503] >= HANDSHAKES * 0.95, statuses  # (a reused keep-alive may fail)
        peak = process_rss_mb(pid)
        print(f"RSS before {before:.1f} MB, after {HANDSHAKES} handshakes {peak:.1f} MB ({dict(statuses)})")

        # After the handshake timeout and python-engineio's first ping interval,
        # the server hands the memory back and logs it: wait for that.
        deadline = time.monotonic() + TIMEOUT_S + PING_INTERVAL_S + 60
        while "half_open_memory_released" not in process.log_path.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        after = process_rss_mb(pid)
        print(f"RSS once the sessions timed out: {after:.1f} MB")
        # Generous (CPython's allocator keeps some of it), yet below the peak those sessions reached.
        assert after <= before + 20, (
            f"RSS {before:.1f} MB before, {peak:.1f} MB after the handshakes, {after:.1f} MB later"
        )

        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{url}/metrics")).text
        assert "wss_half_open_sessions 0.0" in metrics
        assert f"wss_handshakes_timed_out_total {float(statuses[200])}" in metrics
        assert f"wss_handshakes_refused_total {float(statuses[503])}" in metrics
    finally:
        assert process.terminate() == 0

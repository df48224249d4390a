"""`solewatch bench handshakes`: what unauthenticated Engine.IO handshakes cost, and whether it comes back.

An attacker needs no account to open Engine.IO sessions: each
`GET /socket.io/?EIO=4&transport=polling` creates one, and it is only a
Socket.IO CONNECT carrying a token that authenticates it. This bench starts
`solewatch run`, reads its RSS, opens N such sessions (never going further),
reads the RSS again, waits for the server to drop them, and reads it a third
time. `source` runs another checkout of solewatch (an older commit, to compare).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, TRACKER_PORTS_OFF, free_port, print_table, process_rss_mb

HANDSHAKE_PATH = "/socket.io/?EIO=4&transport=polling"


async def start_server(data_dir: Path, *, source: Path, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, int]:
    """`solewatch run` from the checkout at `source`, once ready; returns the process and its HTTP port."""
    http_port = free_port()
    proc_env = {
        **os.environ,
        **TRACKER_PORTS_OFF,
        "PYTHONPATH": str(source),  # ahead of the editable install, so `source`'s code runs
        "SOLEWATCH_DATA_DIR": str(data_dir),
        "SOLEWATCH_HTTP_PORT": str(http_port),
        "SOLEWATCH_LISTENER_PORT": str(free_port()),
        "SOLEWATCH_BIND": "127.0.0.1",
        "SOLEWATCH_LOG_LEVEL": "warning",
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "run",
        env=proc_env,
        cwd=source,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"http://127.0.0.1:{http_port}/readyz")).status_code == 200:
                    return proc, http_port
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    await proc.wait()
    raise RuntimeError("solewatch did not become ready")


async def open_handshakes(url: str, count: int, *, concurrency: int = 32) -> Counter[int]:
    """Open `count` Engine.IO polling sessions and abandon them; returns the answers' status codes (0: no answer)."""
    statuses: Counter[int] = Counter()
    remaining = iter(range(count))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

        async def worker() -> None:
            for _ in remaining:
                try:
                    response = await http.get(HANDSHAKE_PATH)
                except httpx.TransportError:  # a keep-alive connection the server closed as it was reused
                    statuses[0] += 1
                else:
                    statuses[response.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def run(
    *, handshakes: int = 22_000, wait: float = 60.0, source: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """RSS before, right after `handshakes` abandoned sessions, and `wait` seconds later."""
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        proc, port = await start_server(Path(tmp), source=source or ROOT, env=env or {})
        try:
            await asyncio.sleep(1.0)
            rss_before = process_rss_mb(proc.pid)
            started = time.monotonic()
            statuses = await open_handshakes(f"http://127.0.0.1:{port}", handshakes)
            seconds = time.monotonic() - started
            rss_after = process_rss_mb(proc.pid)
            lowest = rss_after
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                lowest = min(lowest, process_rss_mb(proc.pid))
            rss_later = process_rss_mb(proc.pid)
            async with httpx.AsyncClient() as http:  # still serving after all that
                healthy = (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        finally:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return {
        "source": str(source or ROOT),
        "handshakes": handshakes,
        "statuses": {str(code): n for code, n in sorted(statuses.items())},
        "handshakes_per_s": round(handshakes / seconds),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_handshakes_mb": round(rss_after, 1),
        "wait_s": wait,
        "rss_after_wait_mb": round(rss_later, 1),
        "rss_lowest_mb": round(lowest, 1),
        "healthy": healthy,
    }


def report(figures: dict[str, Any]) -> None:
    answers = ", ".join(f"{n:,} × {code}" for code, n in figures["statuses"].items())
    print_table(
        f"handshakes: {figures['handshakes']:,} unauthenticated Engine.IO polling handshakes, abandoned",
        [
            ("code under test", figures["source"]),
            ("answers", f"{answers} ({figures['handshakes_per_s']:,}/s)"),
            ("RSS before", f"{figures['rss_before_mb']} MB"),
            ("RSS right after", f"{figures['rss_after_handshakes_mb']} MB"),
            (
                f"RSS {figures['wait_s']:g} s later",
                f"{figures['rss_after_wait_mb']} MB (lowest {figures['rss_lowest_mb']} MB)",
            ),
            ("/healthz afterwards", "200" if figures["healthy"] else "failed"),
        ],
    )


if __name__ == "__main__":  # python -m bench.handshakes [SOURCE_DIR]: the old code, for comparison
    source_dir = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
    report(asyncio.run(run(source=source_dir)))

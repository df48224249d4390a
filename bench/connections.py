"""`solewatch bench connections`: idle device connections one listener process holds, and their cost."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT, print_table, process_rss_mb, register_devices, start_solewatch


async def run(*, connections: int = 19_000, processes: int = 2) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        data_dir = Path(tmp)
        credentials = await register_devices(data_dir, connections)
        server, port, _ = await start_solewatch(data_dir, max_connections=connections + 100, idle_timeout=3600)
        loadgens: list[asyncio.subprocess.Process] = []
        try:
            await asyncio.sleep(0.5)
            rss_before = process_rss_mb(server.pid)
            for index in range(processes):
                share = credentials[index::processes]
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.loadgen",
                    cwd=ROOT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                assert proc.stdin is not None
                proc.stdin.write(
                    orjson.dumps({"host": "127.0.0.1", "port": port, "credentials": share, "idle": True}) + b"\n"
                )
                await proc.stdin.drain()
                loadgens.append(proc)
            logged_in = 0
            for proc in loadgens:
                assert proc.stdout is not None
                logged_in += orjson.loads(await proc.stdout.readline())["logged_in"]
            await asyncio.sleep(1.0)  # let the listener settle (login tasks done, buffers trimmed)
            rss_after = process_rss_mb(server.pid)
        finally:
            for proc in loadgens:
                if proc.stdin is not None:
                    proc.stdin.close()
            for proc in loadgens:
                await proc.wait()
            await server.stop()
    return {
        "mode": "embedded",
        "connections": connections,
        "held": logged_in,
        "rss_before_mb": round(rss_before, 1),
        "rss_mb": round(rss_after, 1),
        "rss_per_connection_kb": round((rss_after - rss_before) * 1024 / max(logged_in, 1), 2),
    }


def report(figures: dict[str, Any]) -> None:
    print_table(
        f"connections: {figures['connections']:,} idle logged-in devices, one listener process",
        [
            ("connections held", f"{figures['held']:,} of {figures['connections']:,}"),
            ("listener RSS before / after", f"{figures['rss_before_mb']} / {figures['rss_mb']} MB"),
            ("RSS per connection", f"{figures['rss_per_connection_kb']} KB"),
        ],
    )

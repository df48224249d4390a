"""`solewatch bench ingest --protocol NAME`: a tracker protocol's durable throughput against its raw baseline.

As `bench ingest` does for XSole: the same load generators (bench/tracker_loadgen.py, in their own
processes, 1,000 devices by default) face, one after the other in the same run, the raw baseline
(bench/tracker_baseline.py: the protocol's own session framing and decoding, answering at once, no
store) and then `solewatch run` with that protocol's port on. What each figure means:

- `baseline_fps`: positions per second the baseline confirmed, i.e. framed, decoded and answered
  (for the watch, whose positions get no answer, those before each answered LK heartbeat: see the
  load generator), over the measuring window.
- `durable_fps`, for GT06, H02 (text V1 positions, answered with V4) and Teltonika (one record per
  AVL packet, answered with the count of records): positions per second whose answer came back. The
  listener answers a packet only once its events are durable, so each answer is a stored position.
- `durable_fps` for the watch, which answers no position (UD): positions per second the store holds
  that arrived during the measuring window (counted in the store once the load has stopped and the
  count has settled). `confirmed_fps` then gives the positions confirmed by LK answers, for comparison.
- `stored_fps`: the same store count for every protocol, a check on `durable_fps`: they agree, give or
  take the positions in flight at the window's edges.
- `ratio`: durable over baseline. Server CPU (seconds per 1,000 positions) and RSS are the server
  process's, as in `bench ingest`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT, CpuSampler, ServerProcess, free_port, print_table, process_rss_mb, start_solewatch
from shared.protocols.tracker import PROTOCOLS
from shared.protocols.xsole.messages import Position
from shared.store.sqlite import SqliteStore
from shared.store.sqlite_runs import decode_frames

TRACKERS = tuple(name for name in PROTOCOLS if name != "xsole")


def bench_imeis(protocol: str, count: int) -> list[str]:
    """15 digits for GT06 and Teltonika, the 10-digit serials of many H02 devices and watches."""
    if protocol in ("h02", "watch"):
        return [f"88{i:08d}" for i in range(count)]
    return [f"35{i:013d}" for i in range(count)]


async def register_trackers(data_dir: Path, protocol: str, count: int) -> list[str]:
    store = SqliteStore(data_dir / "solewatch.db", synchronous="NORMAL")
    await store.open()
    try:
        tenant_id = await store.ensure_tenant("default")
        imeis = bench_imeis(protocol, count)
        for index, imei in enumerate(imeis):
            await store.add_device(
                tenant_id=tenant_id, imei=imei, name=f"bench {index}", token_hash=b"", protocol=protocol
            )
        return imeis
    finally:
        await store.close()


async def start_tracker_baseline(protocol: str) -> tuple[ServerProcess, int]:
    server = await ServerProcess([sys.executable, "-m", "bench.tracker_baseline", protocol, "0"]).start()
    assert server.proc is not None and server.proc.stdout is not None
    port = int((await server.proc.stdout.readline()).decode())
    return server, port


async def run_tracker_loadgens(
    protocol: str, port: int, imeis: list[str], *, processes: int, **spec: Any
) -> dict[str, Any]:
    procs, paths = [], []
    for index in range(processes):
        share = imeis[index::processes]
        if not share:
            continue
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.tracker_loadgen", cwd=ROOT, stdin=asyncio.subprocess.PIPE
        )
        path = Path(tempfile.mkstemp(prefix="tracker-loadgen-", suffix=".json")[1])
        paths.append(path)
        payload = {"protocol": protocol, "host": "127.0.0.1", "port": port, "imeis": share, "result_path": str(path)}
        payload |= spec | {"ts_offset": spec.get("ts_offset", 0) - index * 7}
        assert proc.stdin is not None
        proc.stdin.write(orjson.dumps(payload) + b"\n")
        proc.stdin.close()
        procs.append(proc)
    for proc in procs:
        await proc.wait()
    results = [orjson.loads(path.read_bytes()) for path in paths]
    for path in paths:
        path.unlink()
    seconds = max(r["seconds"] for r in results) or 1.0
    confirmed = sum(r["confirmed"] for r in results)
    return {
        "confirmed": confirmed,
        "fps": confirmed / seconds,
        "seconds": seconds,
        "logged_in": sum(r["logged_in"] for r in results),
        "refused": sum(r["refused"] for r in results),
        "lost": sum(r["lost"] for r in results),
        "window": (min(r["window"][0] for r in results), max(r["window"][1] for r in results)),
    }


async def measure(protocol: str, port: int, pid: int, imeis: list[str], **load: Any) -> dict[str, Any]:
    async with CpuSampler(pid) as sampler:
        figures = await run_tracker_loadgens(protocol, port, imeis, **load)
    figures["server_cpu_seconds"] = sampler.cpu_between(*figures["window"])
    figures["rss_mb"] = process_rss_mb(pid)
    return figures


def stored_positions(db_path: Path, since: float, until: float) -> int:
    """Positions the store holds that arrived between `since` and `until` (wall clock)."""
    with sqlite3.connect(db_path, timeout=30) as db:
        rows = db.execute(
            "SELECT frames FROM frame_runs WHERE received_at >= ? AND received_at < ?", (since, until)
        ).fetchall()
    return sum(1 for (frames,) in rows for _, event in decode_frames(frames) if type(event) is Position)


async def settled_count(db_path: Path, since: float, until: float, *, quiet: float = 1.0, limit: float = 60.0) -> int:
    """`stored_positions` once the count has not moved for `quiet` seconds."""
    last, last_change, began = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - last_change < quiet and time.monotonic() - began < limit:
        now_stored = await asyncio.to_thread(stored_positions, db_path, since, until)
        if now_stored != last:
            last, last_change = now_stored, time.monotonic()
        await asyncio.sleep(0.2)
    return last


async def run(
    *,
    protocol: str,
    connections: int = 1000,
    seconds: float = 10.0,
    warmup: float = 3.0,
    window: int = 8,
    processes: int = 2,
) -> dict[str, Any]:
    if protocol not in TRACKERS:
        raise ValueError(f"bench ingest --protocol takes one of {', '.join(TRACKERS)} (XSole: leave it out)")
    load = {"processes": processes, "seconds": seconds, "warmup": warmup, "window": window}
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        data_dir = Path(tmp)
        imeis = await register_trackers(data_dir, protocol, connections)

        baseline, port = await start_tracker_baseline(protocol)
        try:
            base = await measure(protocol, port, baseline.pid, imeis, **load)
        finally:
            await baseline.stop()

        # The other tracker ports stay off (start_solewatch's default); this protocol's on a free port.
        port = free_port()
        server, _, _ = await start_solewatch(
            data_dir, max_connections=connections + 100, env={f"SOLEWATCH_{protocol.upper()}_PORT": str(port)}
        )
        try:
            durable = await measure(protocol, port, server.pid, imeis, **load)
            stored = await settled_count(data_dir / "solewatch.db", *durable["window"])
        finally:
            await server.stop()

    stored_fps = stored / durable["seconds"]
    durable_fps = durable["fps"] if protocol != "watch" else stored_fps
    return {
        "protocol": protocol,
        "connections": connections,
        "window": window,
        "durable_fps": round(durable_fps),
        "durable_measured_by": "answers" if protocol != "watch" else "store",
        "baseline_fps": round(base["fps"]),
        "ratio": round(durable_fps / base["fps"], 3) if base["fps"] else None,
        "confirmed_fps": round(durable["fps"]),
        "stored_positions": stored,
        "stored_fps": round(stored_fps),
        "cpu_s_per_1000_positions": round(
            durable["server_cpu_seconds"] / max(durable_fps * durable["seconds"], 1) * 1000, 4
        ),
        "baseline_cpu_s_per_1000_positions": round(base["server_cpu_seconds"] / max(base["confirmed"], 1) * 1000, 4),
        "rss_mb": round(durable["rss_mb"], 1),
        "baseline_rss_mb": round(base["rss_mb"], 1),
        "logged_in": durable["logged_in"],
        "baseline_logged_in": base["logged_in"],
        "refused": durable["refused"],
        "lost": durable["lost"],
        "seconds": round(durable["seconds"], 2),
    }


def report(figures: dict[str, Any]) -> None:
    how = "positions answered" if figures["durable_measured_by"] == "answers" else "positions in the store"
    print_table(
        f"ingest {figures['protocol']}: {figures['connections']} connections, window {figures['window']}",
        [
            ("durable frames/s", f"{figures['durable_fps']:,} ({how})"),
            ("raw baseline frames/s", f"{figures['baseline_fps']:,}"),
            ("ratio durable / baseline", f"{figures['ratio']:.1%}" if figures["ratio"] else "n/a"),
            ("stored in the window, per s", f"{figures['stored_fps']:,} ({figures['stored_positions']:,} positions)"),
            (
                "server CPU s per 1,000 frames",
                f"{figures['cpu_s_per_1000_positions']} (baseline {figures['baseline_cpu_s_per_1000_positions']})",
            ),
            ("server RSS", f"{figures['rss_mb']} MB (baseline {figures['baseline_rss_mb']} MB)"),
            ("devices logged in", f"{figures['logged_in']} (baseline {figures['baseline_logged_in']})"),
            ("logins refused", f"{figures['refused']}"),
        ],
    )

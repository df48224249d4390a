"""`solewatch bench purge`: ingest throughput while the retention purge runs, against ingest
without it, in one run (CONTRACT §8; target: at least 90%).

The store first gets `days` of history for every device, ending two days ago. Storing that through the
listener would take hours, so the bench writes frame runs straight into
`frame_runs`, as the commit would store them: one position every `fix_interval`
seconds (a heartbeat and an activity in between), four frames a run. The same
encoded runs serve every device (frames carry no device id). Then the same
server is measured under the same load with the default retention (90 days:
the purge at start finds nothing) and with the tenant's
`telemetry_retention_days` cut to half the history, so that the purge
starting with the server deletes runs through the whole measuring window;
the two alternate, PAIRS times each.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import print_table, register_devices, start_solewatch
from bench.ingest import measure
from shared.protocols.xsole import Activity, Heartbeat, Position, encode
from shared.store.sqlite import SqliteStore
from shared.store.tenant_settings import TenantSettings

DAY_S = 86400
FRAMES_PER_RUN = 4
PAIRS = 2  # measurements without and with the purge, alternated


def history_runs(days: int, fix_interval: int, end: int) -> list[tuple[int, int, bytes]]:
    """One device's `days` of runs up to `end`: (first ts, last ts, frames)."""
    runs: list[tuple[int, int, bytes]] = []
    frames: list[bytes] = []
    for n, ts in enumerate(range(end - days * DAY_S, end, fix_interval)):
        seq = n % 65536
        if n % 12 == 6:
            event: Any = Heartbeat(seq, ts, 80, -70)
        elif n % 6 == 3:
            event = Activity(seq, ts, 40, 2, 95, 80, 0)
        else:
            event = Position(seq, ts, 436163000 + n % 1000, 70553000, 12, 140, 900, 9, 11, 80, 1)
        frames.append(encode(event))
        if len(frames) == FRAMES_PER_RUN:
            runs.append((ts - (FRAMES_PER_RUN - 1) * fix_interval, ts, b"".join(frames)))
            frames = []
    return runs


def fill(path: Path, device_ids: list[int], runs: list[tuple[int, int, bytes]]) -> int:
    """Every device gets the runs; how many rows were written."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")  # a bench's fixture: a crash here only means a re-run
        received = time.time()
        for start in range(0, len(device_ids), 50):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO frame_runs(device_id, first_ts, last_ts, received_at, frames) VALUES (?, ?, ?, ?, ?)",
                (
                    (device_id, first_ts, last_ts, received, frames)
                    for device_id in device_ids[start : start + 50]
                    for first_ts, last_ts, frames in runs
                ),
            )
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(device_ids) * len(runs)
    finally:
        conn.close()


def count_runs(path: Path, before: int | None = None) -> int:
    conn = sqlite3.connect(path)
    try:
        if before is None:
            return int(conn.execute("SELECT count(*) FROM frame_runs").fetchone()[0])
        return int(conn.execute("SELECT count(*) FROM frame_runs WHERE first_ts < ?", (before,)).fetchone()[0])
    finally:
        conn.close()


async def _set_retention(db: Path, days: int) -> None:
    store = SqliteStore(db, synchronous="NORMAL")
    await store.open()
    try:
        tenant_id = await store.ensure_tenant("default")
        await store.set_tenant_settings(tenant_id, TenantSettings(telemetry_retention_days=days))
    finally:
        await store.close()


async def run(
    *,
    connections: int = 1000,
    days: int = 30,
    fix_interval: int = 300,
    seconds: float = 10.0,
    warmup: float = 3.0,
    window: int = 8,
    processes: int = 2,
) -> dict[str, Any]:
    load = {"processes": processes, "seconds": seconds, "warmup": warmup, "window": window, "rate": 0.0}
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-purge-") as tmp:
        data_dir = Path(tmp)
        db = data_dir / "solewatch.db"
        credentials = await register_devices(data_dir, connections)
        device_ids = list(range(1, connections + 1))  # AUTOINCREMENT: the first devices of a new store
        now = int(time.time())
        began = time.monotonic()
        # The load generators date their frames from a day ago on (bench/loadgen.py): the history
        # ends before that, so neither run's frames overlap stored ones (which would take the
        # commit's rare path that drops copies), and the second run is dated after the first.
        runs = history_runs(days, fix_interval, now - 2 * DAY_S)
        rows = fill(db, device_ids, runs)
        fill_s = time.monotonic() - began
        db_mb = db.stat().st_size / 1e6

        # Without and with the purge in turn, PAIRS times, so that a neighbour's load on a shared
        # machine falls on both alike. Without: the default 90 days keep the whole history, and
        # the purge at start finds nothing. With: half the history is past the retention, and
        # the purge, starting with the server, deletes through the window (and carries on in
        # the next "with" run, which is how the expired runs last).
        kept_days = max(1, days // 2)
        cutoff = now - kept_days * DAY_S
        expired = 0
        quiet: list[dict[str, Any]] = []
        busy: list[dict[str, Any]] = []
        for turn in range(2 * PAIRS):
            purging = turn % 2 == 1
            await _set_retention(db, kept_days if purging else TenantSettings().telemetry_retention_days)
            if turn == 1:
                expired = count_runs(db, cutoff)
            server, port, _ = await start_solewatch(data_dir, max_connections=connections + 100)
            try:
                # Each run's frames dated after the previous run's (bench/loadgen.py: from a day ago).
                figures = await measure(port, server.pid, credentials, **load, ts_offset=turn * DAY_S // 8)
            finally:
                await server.stop()
            (busy if purging else quiet).append(figures)
        left_at_end = count_runs(db, cutoff)  # the purge still had work when the last window closed

    without, with_ = sum(f["fps"] for f in quiet), sum(f["fps"] for f in busy)
    return {
        "connections": connections,
        "history_days": days,
        "fix_interval_s": fix_interval,
        "history_runs": rows,
        "history_frames": rows * FRAMES_PER_RUN,
        "fill_s": round(fill_s, 1),
        "db_mb": round(db_mb),
        "kept_days": kept_days,
        "expired_runs": expired,
        "expired_runs_left_at_end": left_at_end,
        "fps_without_purge": round(without / PAIRS),
        "fps_with_purge": round(with_ / PAIRS),
        "ratio": round(with_ / without, 3) if without else None,
        "pair_ratios": [round(b["fps"] / q["fps"], 3) if q["fps"] else None for q, b in zip(quiet, busy, strict=True)],
        "ack_p99_ms_without_purge": round(max(f["p99_ms"] for f in quiet), 2),
        "ack_p99_ms_with_purge": round(max(f["p99_ms"] for f in busy), 2),
        "seconds": round(busy[-1]["seconds"], 2),
    }


def report(figures: dict[str, Any]) -> None:
    print_table(
        "ingest while the retention purge runs (embedded mode)",
        [
            (
                "history",
                f"{figures['history_days']} days x {figures['connections']} devices, "
                f"a frame every {figures['fix_interval_s']} s: {figures['history_frames']:,} frames "
                f"in {figures['history_runs']:,} runs, {figures['db_mb']} MB",
            ),
            (
                "purged during the run",
                f"{figures['expired_runs'] - figures['expired_runs_left_at_end']:,} "
                f"of {figures['expired_runs']:,} expired runs (older than {figures['kept_days']} days)",
            ),
            ("frames/s without purge", f"{figures['fps_without_purge']:,}"),
            ("frames/s with purge", f"{figures['fps_with_purge']:,}"),
            ("ratio", f"{figures['ratio']} (pairs: {', '.join(map(str, figures['pair_ratios']))})"),
            (
                "ack p99 without / with",
                f"{figures['ack_p99_ms_without_purge']} / {figures['ack_p99_ms_with_purge']} ms",
            ),
        ],
    )


def _pair(figures: dict[str, Any], name: str) -> str:
    return f"{figures[f'{name}_without_purge']} / {figures[f'{name}_with_purge']} ms"

"""`solewatch bench disk`: bytes on disk per stored frame and per device-year (docs/operations.md).

Devices report as the simulator does by default (services/simulator/walk.py):
a POSITION every 5 s while walking, an ACTIVITY every 30 s, a HEARTBEAT every
60 s; 900 frames a device-hour. The frames go through the store's real commit
path (`commit_telemetry`), grouped as a busy listener groups them: one commit
per second of device time, holding that second's frames from every device.
The outbox is drained as the relay drains it. What is measured is the growth of
the pages in use (free pages left by the drained outbox are not counted), with
the WAL checkpointed into the file.

MongoDB is measured the same way against SOLEWATCH_TEST_MONGODB_URL when set
(dbStats' storage and index sizes after an fsync, so WiredTiger has written
its checkpoint); the emulator the tests use measures nothing.

`python -m bench.disk --devices 200 --hours 2 --runs 3` prints min/median/max.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.protocols.xsole import Activity, Heartbeat, Position
from shared.store import FrameRecord, hash_device_token
from shared.store.batch import IngestBatch

POSITION_EVERY_S = 5  # the simulator's default --rate 0.2
ACTIVITY_EVERY_S = 30
HEARTBEAT_EVERY_S = 60
FRAMES_PER_DEVICE_HOUR = 3600 // POSITION_EVERY_S + 3600 // ACTIVITY_EVERY_S + 3600 // HEARTBEAT_EVERY_S
HOURS_PER_YEAR = 24 * 365
WORKING_HOURS_PER_YEAR = 2000  # 250 shifts of 8 h: an insole streams while worn
OUTBOX_DRAIN_EVERY = 50  # commits


def frames_of_second(devices: list[tuple[int, int, str]], second: int, start: int, rng: random.Random) -> list[Any]:
    """The frames every device records in that second of device time (a walk, its steps, its battery)."""
    records = []
    ts = start + second
    for index, (device_id, tenant_id, imei) in enumerate(devices):
        phase = second + index  # devices do not report in step
        seq = (second * 3 + index) & 0xFFFF
        battery = max(5, 100 - second // 600)
        if phase % POSITION_EVERY_S == 0:
            lat = 436160000 + index * 10_000 + second * 7 + rng.randint(-30, 30)
            lon = 70550000 + second * 5 + rng.randint(-30, 30)
            event: Any = Position(
                seq, ts, lat, lon, 12 + rng.randint(-2, 2), 140 + rng.randint(-20, 20), rng.randint(0, 3599),
                rng.randint(6, 12), rng.randint(6, 20), battery, 1,
            )  # fmt: skip
            records.append(FrameRecord(device_id, tenant_id, imei, event, time.time()))
        if phase % ACTIVITY_EVERY_S == 1:
            event = Activity(seq + 1, ts, rng.randint(40, 60), 2, rng.randint(90, 120), battery, 0)
            records.append(FrameRecord(device_id, tenant_id, imei, event, time.time()))
        if phase % HEARTBEAT_EVERY_S == 2:
            event = Heartbeat(seq + 2, ts, battery, -rng.randint(60, 95))
            records.append(FrameRecord(device_id, tenant_id, imei, event, time.time()))
    return records


def device_time(hours: float) -> Iterator[int]:
    return iter(range(int(hours * 3600)))


async def _register(store: Any, count: int) -> list[tuple[int, int, str]]:
    tenant_id = await store.ensure_tenant("default")
    devices = []
    for i in range(count):
        device = await store.add_device(
            tenant_id=tenant_id, imei=f"35{i:013d}", name=f"disk {i}", token_hash=hash_device_token(os.urandom(16))
        )
        devices.append((device.id, tenant_id, device.imei))
    return devices


async def _fill(store: Any, devices: list[tuple[int, int, str]], hours: float, seed: int) -> int:
    """Commit `hours` of every device's frames; returns how many frames were stored."""
    rng = random.Random(seed)
    start = int(time.time()) - int(hours * 3600) - 60
    frames = 0
    for commits, second in enumerate(device_time(hours), 1):
        records = frames_of_second(devices, second, start, rng)
        if records:
            await store.commit_telemetry(IngestBatch.from_events(records))
            frames += len(records)
        if commits % OUTBOX_DRAIN_EVERY == 0:
            await _drain_outbox(store)
    await _drain_outbox(store)
    return frames


async def _drain_outbox(store: Any) -> None:
    while pending := await store.outbox_pending(10_000):
        await store.outbox_remove([entry.id for entry in pending])


def _sqlite_bytes_in_use(path: Path) -> tuple[int, int]:
    """(bytes of the pages in use, bytes of the file) once the WAL is checkpointed."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages, free, page_size = (db.execute(f"PRAGMA {name}").fetchone()[0] for name in
                                  ("page_count", "freelist_count", "page_size"))  # fmt: skip
    return (pages - free) * page_size, path.stat().st_size


async def measure_sqlite(devices: int, hours: float, seed: int) -> dict[str, Any]:
    from shared.store.sqlite import SqliteStore

    with tempfile.TemporaryDirectory(prefix="solewatch-disk-") as tmp:
        path = Path(tmp) / "solewatch.db"
        # NORMAL, not FULL: how often the WAL is synced changes the time taken, not the bytes stored.
        store = SqliteStore(path, synchronous="NORMAL")
        await store.open()
        try:
            registered = await _register(store, devices)
            before, _ = _sqlite_bytes_in_use(path)
            started = time.monotonic()
            frames = await _fill(store, registered, hours, seed)
            seconds = time.monotonic() - started
        finally:
            await store.close()
        after, file_bytes = _sqlite_bytes_in_use(path)
        stored = _sqlite_frames_stored(path)
    if stored != frames:
        raise RuntimeError(f"{frames} frames committed but {stored} stored: the figures would be wrong")
    return _figures("sqlite", devices, hours, frames, after - before, file_bytes, seconds)


def _sqlite_frames_stored(path: Path) -> int:
    """Frames in the store's runs, decoded as a read decodes them."""
    from shared.store.sqlite_runs import decode_frames

    with sqlite3.connect(path) as db:
        return sum(sum(1 for _ in decode_frames(frames)) for (frames,) in db.execute("SELECT frames FROM frame_runs"))


async def measure_mongodb(url: str, devices: int, hours: float, seed: int) -> dict[str, Any]:
    from pymongo import AsyncMongoClient

    from shared.store.mongo import MongoStore

    name = f"solewatch_disk_{os.getpid()}_{seed}"
    store = MongoStore(url, name)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    await store.open()
    try:
        registered = await _register(store, devices)
        before = await _mongo_bytes(client, name)
        started = time.monotonic()
        frames = await _fill(store, registered, hours, seed)
        seconds = time.monotonic() - started
        after = await _mongo_bytes(client, name)
    finally:
        await store.close()
        await client.drop_database(name)
        await client.close()
    return _figures("mongodb", devices, hours, frames, after - before, after, seconds)


async def _mongo_bytes(client: Any, name: str) -> int:
    await client.admin.command("fsync")  # WiredTiger's sizes are those of its last checkpoint
    stats = await client[name].command("dbStats")
    return int(stats["storageSize"] + stats["indexSize"])


def _figures(
    store: str, devices: int, hours: float, frames: int, grown: int, file_bytes: int, seconds: float
) -> dict[str, Any]:
    per_frame = grown / frames
    return {
        "store": store,
        "devices": devices,
        "device_hours": devices * hours,
        "frames": frames,
        "bytes_grown": grown,
        "store_bytes": file_bytes,
        "bytes_per_frame": round(per_frame, 1),
        "gb_per_device_year_24h": round(per_frame * FRAMES_PER_DEVICE_HOUR * HOURS_PER_YEAR / 1e9, 3),
        "gb_per_device_year_2000h": round(per_frame * FRAMES_PER_DEVICE_HOUR * WORKING_HOURS_PER_YEAR / 1e9, 3),
        "seconds": round(seconds, 1),
    }


async def run(*, devices: int = 200, hours: float = 2.0, runs: int = 3) -> dict[str, Any]:
    """Each store measured `runs` times on a fresh database; min, median and max of each figure."""
    results: dict[str, Any] = {"frames_per_device_hour": FRAMES_PER_DEVICE_HOUR}
    stores: list[tuple[str, Any]] = [("sqlite", lambda seed: measure_sqlite(devices, hours, seed))]
    url = os.environ.get("SOLEWATCH_TEST_MONGODB_URL")
    if url:
        stores.append(("mongodb", lambda seed: measure_mongodb(url, devices, hours, seed)))
    else:
        results["mongodb"] = "not measured: SOLEWATCH_TEST_MONGODB_URL is not set"
    for name, measure in stores:
        samples = [await measure(seed) for seed in range(runs)]
        results[name] = {
            "runs": samples,
            **{
                key: {"min": min(values), "median": statistics.median(values), "max": max(values)}
                for key in ("bytes_per_frame", "gb_per_device_year_24h", "gb_per_device_year_2000h")
                for values in [[sample[key] for sample in samples]]
            },
        }
    return results


def report(figures: dict[str, Any]) -> None:
    print(f"{figures['frames_per_device_hour']} frames a device-hour (POSITION/5 s, ACTIVITY/30 s, HEARTBEAT/60 s)")
    for name in ("sqlite", "mongodb"):
        result = figures.get(name)
        if not isinstance(result, dict):
            print(f"{name}: {result}")
            continue
        first = result["runs"][0]
        hours = first["device_hours"] / first["devices"]
        runs = len(result["runs"])
        print(f"{name}: {runs} runs of {first['devices']} devices x {hours:g} h ({first['frames']:,} frames)")
        for key, label in (
            ("bytes_per_frame", "bytes per frame"),
            ("gb_per_device_year_24h", "GB per device-year, streaming 24/7"),
            ("gb_per_device_year_2000h", f"GB per device-year, {WORKING_HOURS_PER_YEAR} h worn"),
        ):
            low, mid, high = (result[key][part] for part in ("min", "median", "max"))
            print(f"  {label:<40} min {low:<8g} median {mid:<8g} max {high:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--hours", type=float, default=2.0, help="device time stored per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    report(asyncio.run(run(devices=args.devices, hours=args.hours, runs=args.runs)))


if __name__ == "__main__":
    main()

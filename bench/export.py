"""`solewatch bench export`: the memory a device's export (GET /api/v1/devices/{imei}/export) takes,
for a small and a large device, in one run.

Two devices are stored in one embedded store: one with `--frames` / 10
positions (and a third as many activities and heartbeats), one with `--frames`.
Each is exported three times through the route's own generator, the bytes
counted and thrown away as a client that writes them to disk would, while the
process's resident memory is read after every page: the figure is its peak
during that export (the whole process: the store's data, SQLite's page cache
and the interpreter included, all of it already there before the export). If the export streams, the large
device's peak is about the small one's (a page of rows, what zlib and SQLite's
page cache hold), not ten times it. (tracemalloc would count Python objects
more exactly but slows this code fifteenfold.)

Store filling goes through the real commit path in batches as the listener
commits them; it takes most of the run.
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import print_table
from services.api.export import _zip
from services.context import ServiceContext
from shared.bus.memory import MemoryBus
from shared.cache.memory import MemoryCache
from shared.config import Settings
from shared.protocols.xsole import Activity, Heartbeat, Position
from shared.store import Device, FrameRecord, hash_device_token
from shared.store.batch import IngestBatch
from shared.store.sqlite import SqliteStore

T0 = 1_767_225_600  # 2026-01-01
BATCH = 5000


async def _fill(store: SqliteStore, device: Device, positions: int) -> None:
    events: list[Any] = []
    for n in range(positions):
        events.append(Position(n + 1, T0 + n, 436163000 + n % 10_000, 70553000, 12, 140, 2705, 9, 8, 87, 1))
        if n % 3 == 0:
            events.append(Activity(10_000_000 + n, T0 + n, 12, 2, 96, 80, 0))
            events.append(Heartbeat(20_000_000 + n, T0 + n, 80, -71))
        if len(events) >= BATCH:
            await _commit(store, device, events)
            events = []
    await _commit(store, device, events)


async def _commit(store: SqliteStore, device: Device, events: list[Any]) -> None:
    if events:
        records = [FrameRecord(device.id, device.tenant_id, device.imei, e, time.time()) for e in events]
        await store.commit_telemetry(IngestBatch.from_events(records))


def _rss() -> int:
    """This process's resident memory now, in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _export(context: ServiceContext, device: Device) -> tuple[int, int, float]:
    """(bytes sent, the process's peak resident memory meanwhile, seconds)."""
    gc.collect()
    peak = _rss()
    started, sent = time.perf_counter(), 0
    async for chunk in _zip(context, device):
        sent += len(chunk)
        peak = max(peak, _rss())  # after every page: what the export holds at its largest
    return sent, peak, time.perf_counter() - started


async def run(*, frames: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        settings = Settings.model_validate({"data_dir": Path(tmp)})
        store = SqliteStore(settings.sqlite_path, synchronous="NORMAL")
        await store.open()
        try:
            tenant = await store.ensure_tenant("bench")
            sizes = {"small": frames // 10, "large": frames}
            devices: dict[str, Device] = {}
            for name, count in sizes.items():
                imei = f"35630704{len(devices):07d}"
                device = await store.add_device(
                    tenant_id=tenant, imei=imei, name=name, token_hash=hash_device_token(b"x")
                )
                print(f"storing {count:,} positions for the {name} device…", flush=True)
                await _fill(store, device, count)
                devices[name] = device
            bus = MemoryBus()
            context = ServiceContext(
                settings=settings,
                store=store,
                cache=MemoryCache(),
                bus=bus,
                commands=None,  # type: ignore[arg-type]  # an export sends no command
            )
            figures: dict[str, Any] = {"frames_large": frames}
            for name, device in devices.items():
                runs = [await _export(context, device) for _ in range(3)]
                figures[f"{name}_positions"] = sizes[name]
                figures[f"{name}_zip_bytes"] = runs[0][0]
                figures[f"{name}_peak_mib"] = [round(peak / 2**20, 1) for _, peak, _ in runs]
                figures[f"{name}_seconds"] = [round(s, 2) for _, _, s in runs]
            figures["peak_ratio_median"] = round(
                statistics.median(figures["large_peak_mib"]) / statistics.median(figures["small_peak_mib"]), 2
            )
            return figures
        finally:
            await store.close()


def report(figures: dict[str, Any]) -> None:
    rows = []
    for name in ("small", "large"):
        peaks, seconds = figures[f"{name}_peak_mib"], figures[f"{name}_seconds"]
        rows.append(
            (
                f"{name} device: {figures[f'{name}_positions']:,} positions, zip",
                f"{figures[f'{name}_zip_bytes'] / 1e6:.1f} MB",
            )
        )
        rows.append(
            (
                f"{name} device: peak RSS MiB min/median/max",
                f"{min(peaks):,} / {statistics.median(peaks):,} / {max(peaks):,}",
            )
        )
        rows.append(
            (
                f"{name} device: seconds min/median/max",
                f"{min(seconds)} / {statistics.median(seconds)} / {max(seconds)}",
            )
        )
    rows.append(("large over small peak memory (medians)", str(figures["peak_ratio_median"])))
    print_table("Export of one device, three times each", rows)

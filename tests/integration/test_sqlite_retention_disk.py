"""The embedded store's file under a steady state of ingest and purge: pages the purge frees
are reused by the next days' frames, so the file stops growing once it holds the retention's
worth (measured in pages, never in time)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shared.protocols.xsole import Position
from shared.store.sqlite import SqliteStore
from tests.contract.store_data import add_device, frame, position
from tests.helpers.stored import commit_frames

DAY_S = 86400
T0 = 1_780_000_000
DEVICES = 20
FRAMES_PER_DEVICE_A_DAY = 150
KEPT_DAYS = 2
DAYS = 12


def pages(c: sqlite3.Connection) -> tuple[int, int]:
    """(pages in the file, of which free)."""
    return c.execute("PRAGMA page_count").fetchone()[0], c.execute("PRAGMA freelist_count").fetchone()[0]


async def test_ingest_and_purge_cycles_keep_the_file_bounded(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db", synchronous="NORMAL")
    await store.open()
    try:
        devices = [await add_device(store, f"3563070424{n:05d}") for n in range(DEVICES)]
        tenant = devices[0].tenant_id
        sizes: list[tuple[int, int]] = []
        for day in range(DAYS):
            start = T0 + day * DAY_S
            for step in range(0, FRAMES_PER_DEVICE_A_DAY, 10):  # a commit every few frames, as a listener does
                records = [
                    frame(device, _fix(day * FRAMES_PER_DEVICE_A_DAY + step + i, start + (step + i) * 60))
                    for device in devices
                    for i in range(10)
                ]
                await commit_frames(store, records)
                # The relay moves each commit's message on and removes it, as it would running.
                await store.outbox_remove([entry.id for entry in await store.outbox_pending(1000)])
            while (await store.purge_telemetry(tenant, start - KEPT_DAYS * DAY_S + DAY_S, limit=200)).more:
                pass
            sizes.append(await store._read(pages))
    finally:
        await store.close()

    # Days 0-2 fill the file up to what the retention holds; from then on each day's frames
    # take the pages the purge freed the day before, and the file does not grow.
    full = sizes[KEPT_DAYS][0]
    assert sizes[KEPT_DAYS][0] > sizes[0][0]  # it did grow while filling
    assert all(total <= full * 1.1 for total, _ in sizes[KEPT_DAYS:]), sizes
    assert any(free for _, free in sizes[KEPT_DAYS:]), sizes  # the purge freed pages for reuse


def _fix(seq: int, ts: int) -> Position:
    return position(seq % 65536, ts)

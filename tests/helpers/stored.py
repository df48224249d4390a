"""What a store holds and how frames get into it, for tests: the storage ports offer neither.

- `commit_frames`: frames committed as the listener commits them (one batch).
- `count_stored`: how many frames of each kind a device has stored, counted
  through the adapter's own connection or collections.
- `as_stored`: wire positions as the store returns them, to compare with.
- `frames_on_disk`: what an embedded store's file holds, read with a
  connection of the test's own (telemetry is kept in runs of frames,
  shared/store/sqlite_runs.py, so frames are counted by decoding them).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from shared.protocols.xsole import Position
from shared.store import FrameRecord, StoredPosition, TelemetryStore
from shared.store.batch import IngestBatch
from shared.store.messages import TELEMETRY_EVENTS, TELEMETRY_KIND_OF_TYPE
from shared.store.sqlite_runs import decode_frames


async def commit_frames(store: TelemetryStore, records: Sequence[FrameRecord]) -> None:
    """Commit the frames as one batch, as the listener does after accepting them."""
    # The one place tests build a batch from records.
    await store.commit_telemetry(IngestBatch.from_events(records))


async def count_stored(store: object, device_id: int) -> dict[str, int]:
    """How many positions, heartbeats, activities and alarms the device has stored, each counted once.

    Through the adapter's own database handle (MongoStore._db) or reader connection
    (SqliteStore._read), so also through the wrappers tests put around an adapter, which
    forward attributes (tests/contract/mongo_shim.py)."""
    db = getattr(store, "_db", None)
    if db is not None:
        return {
            # A position counts once its key is stored: a copy stored twice (docs/storage.md) counts once.
            "positions": await db.position_keys.count_documents({"device_id": device_id}),
            **{
                kind: await db[kind].count_documents({"device_id": device_id})
                for kind in ("heartbeats", "activities", "alarms")
            },
        }
    read = store._read  # type: ignore[attr-defined]  # a SqliteStore, or a wrapper of one
    counts: dict[str, int] = await read(lambda c: _count_in_sqlite(c, device_id))
    return counts


def _count_in_sqlite(c: sqlite3.Connection, device_id: int) -> dict[str, int]:
    counts = dict.fromkeys(TELEMETRY_EVENTS, 0)
    for (frames,) in c.execute("SELECT frames FROM frame_runs WHERE device_id = ?", (device_id,)):
        for raw, _ in decode_frames(frames):
            counts[TELEMETRY_KIND_OF_TYPE[raw[3]]] += 1
    counts["alarms"] = c.execute("SELECT count(*) FROM alarms WHERE device_id = ?", (device_id,)).fetchone()[0]
    return counts


def as_stored(*positions: Position) -> list[StoredPosition]:
    """Positions as a device sent them, as the store gives them back (every field the wire has,
    the flags as the two the store keeps)."""
    return [
        StoredPosition(
            p.ts,
            p.seq,
            p.lat_e7,
            p.lon_e7,
            p.alt_m,
            p.speed_cms,
            p.course_ddeg,
            p.sats,
            p.hdop_d,
            p.battery,
            p.fix_valid,
            p.buffered,
        )
        for p in positions
    ]


def frames_on_disk(db_path: Path | str) -> Counter[tuple[int, str, int, int]]:
    """How many times each (device id, kind, device ts, seq) is stored."""
    stored: Counter[tuple[int, str, int, int]] = Counter()
    db = sqlite3.connect(db_path)
    try:
        for device_id, frames in db.execute("SELECT device_id, frames FROM frame_runs"):
            for raw, event in decode_frames(frames):
                stored[(device_id, TELEMETRY_KIND_OF_TYPE[raw[3]], event.ts, event.seq)] += 1
    finally:
        db.close()
    return stored

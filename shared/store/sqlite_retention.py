"""SQLite adapter, retention (a mixin of SqliteStore).

Telemetry is kept in runs of frames (sqlite_runs.py). A run whose frames are
all before the cut-off is deleted; a run straddling it (its first frame
before, its last after: rare, a run is the frames of one device in one
commit) is rewritten with only its frames at or after the cut-off, so nothing
older than the retention stays readable. Runs are chosen on the reader
thread, where their frames are counted by kind from their headers (only the
rare straddling runs are decoded, to cut them); the writer only deletes rows
by id and rewrites the few cut runs, so a chunk holds the single writer,
which ingestion shares, for a few milliseconds.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import orjson

from shared.protocols.xsole import Activity, FrameType, Heartbeat, Position
from shared.protocols.xsole.framing import HEADER_SIZE
from shared.store.reports import HOUR_S, hour_of
from shared.store.retention import PurgeChunk
from shared.store.sqlite_devices import _ERASE_BY_ALERT as ERASE_BY_ALERT  # what goes with an alert
from shared.store.sqlite_runs import RUN_SPAN_S, decode_frames

T = TypeVar("T")

_KIND_OF_EVENT = {Position: "positions", Heartbeat: "heartbeats", Activity: "activities"}
_KIND_OF_TYPE: dict[int, str] = {
    FrameType.POSITION: "positions",
    FrameType.HEARTBEAT: "heartbeats",
    FrameType.ACTIVITY: "activities",
}
# A run spans at most RUN_SPAN_S, so one starting before the cut-off ends before cut-off + RUN_SPAN_S:
# the index on (device_id, last_ts) bounds the scan, first_ts picks the runs.
_EXPIRED_RUNS = (
    "SELECT r.id, r.first_ts, r.last_ts, r.frames FROM json_each(?) AS d CROSS JOIN frame_runs AS r"
    f" WHERE r.device_id = d.value AND r.last_ts < ? + {RUN_SPAN_S} AND r.first_ts < ? LIMIT ?"
)
_IN_IDS = "IN (SELECT value FROM json_each(?))"  # ids as one JSON parameter: no cap on their number
_EXPIRED_ALERTS = "SELECT id FROM alerts WHERE tenant_id = ? AND status = 'resolved' AND resolved_at < ? LIMIT ?"

Cut = tuple[int, int, bytes, int]  # run id, its new first ts, the frames kept, the first ts it had


class SqliteRetention:
    if TYPE_CHECKING:  # provided by SqliteStore
        _newest_stored: dict[int, int]

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def purge_telemetry(self, tenant_id: int | None, before: int, *, limit: int = 500) -> PurgeChunk:
        # Devices with stored runs are the keys of _newest_stored (kept by the commit, on this loop).
        stored = list(self._newest_stored)

        def find(c: sqlite3.Connection) -> tuple[list[int], list[int], list[Cut], Counter[str], bool]:
            if tenant_id is None:
                registered = {device_id for (device_id,) in c.execute("SELECT id FROM devices")}
                devices = [device_id for device_id in stored if device_id not in registered]
            else:
                devices = [d for (d,) in c.execute("SELECT id FROM devices WHERE tenant_id = ?", (tenant_id,))]
            rows = c.execute(_EXPIRED_RUNS, (orjson.dumps(devices), before, before, limit)).fetchall()
            deleted: list[int] = []
            cut: list[Cut] = []
            counts: Counter[str] = Counter()
            for run_id, first_ts, last_ts, frames in rows:
                if last_ts < before:  # the common case: all of it goes, its frames are only counted
                    _count_kinds(frames, counts)
                    deleted.append(run_id)
                    continue
                kept: list[bytes] = []
                kept_from = last_ts
                for raw, event in decode_frames(frames):
                    if event.ts < before:
                        counts[_KIND_OF_EVENT[type(event)]] += 1
                    else:
                        kept.append(raw)
                        kept_from = min(kept_from, event.ts)
                if kept:
                    cut.append((run_id, kept_from, b"".join(kept), first_ts))
                else:
                    deleted.append(run_id)
            return devices, deleted, cut, counts, len(rows) == limit

        devices, deleted, cut, counts, more = await self._read(find)
        if deleted or cut:

            def purge(c: sqlite3.Connection) -> None:
                c.execute(f"DELETE FROM frame_runs WHERE id {_IN_IDS}", (orjson.dumps(deleted),))
                # Only if unchanged since it was read (an erasure may have deleted it meanwhile).
                c.executemany(
                    "UPDATE frame_runs SET first_ts = ?, frames = ? WHERE id = ? AND first_ts = ?",
                    [(kept_from, frames, run_id, first_ts) for run_id, kept_from, frames, first_ts in cut],
                )

            await self._write(purge)
        if not more:  # the frames are gone: so are the reports' hours summed from them
            await self._write(lambda c: _forget_report_hours(c, devices, before))
        return PurgeChunk(dict(counts), more)

    async def purge_alerts(self, tenant_id: int, resolved_before: float, *, limit: int = 200) -> PurgeChunk:
        def purge(c: sqlite3.Connection) -> PurgeChunk:
            ids = [alert_id for (alert_id,) in c.execute(_EXPIRED_ALERTS, (tenant_id, resolved_before, limit))]
            if not ids:
                return PurgeChunk()
            chosen = orjson.dumps(ids)
            deleted = Counter(alerts=len(ids))
            for table in ERASE_BY_ALERT:
                rows = c.execute(f"DELETE FROM {table} WHERE alert_id {_IN_IDS}", (chosen,))
                if table in ("alert_events", "notifications"):
                    deleted[table] = rows.rowcount
            c.execute(f"DELETE FROM alarms WHERE id IN (SELECT alarm_id FROM alerts WHERE id {_IN_IDS})", (chosen,))
            c.execute(f"DELETE FROM alerts WHERE id {_IN_IDS}", (chosen,))
            return PurgeChunk(dict(deleted), len(ids) == limit)

        return await self._write(purge)


def _forget_report_hours(c: sqlite3.Connection, devices: list[int], before: int) -> None:
    """Delete the hour totals of hours wholly before `before`; the hour it falls in is summed again
    from the frames left (marked, as a late frame marks it)."""
    chosen = orjson.dumps(devices)
    c.execute(f"DELETE FROM report_hours WHERE device_id {_IN_IDS} AND hour <= ?", (chosen, before - HOUR_S))
    c.execute(
        f"INSERT OR IGNORE INTO report_marks(device_id, hour) SELECT device_id, hour FROM report_hours"
        f" WHERE device_id {_IN_IDS} AND hour = ?",
        (chosen, hour_of(before)),
    )


def _count_kinds(frames: bytes, counts: Counter[str]) -> None:
    """Count a run's frames by kind from their headers alone (type at byte 3, length at 4-5):
    decoding every frame of a whole purge took most of its CPU time, which ingestion shares."""
    at, end = 0, len(frames)
    while at + HEADER_SIZE <= end:
        kind = _KIND_OF_TYPE.get(frames[at + 3])
        if kind is not None:
            counts[kind] += 1
        # The length counts seq and payload; magic, version, type, length and the CRC make 8 bytes more.
        at += HEADER_SIZE + int.from_bytes(frames[at + 4 : at + 6])

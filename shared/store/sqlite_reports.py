"""SQLite adapter, reports' hour totals (a mixin of SqliteStore; see shared/store/reports.py).

Marks come from frame_runs itself: the ids of runs only grow (INTEGER PRIMARY KEY, a new row
takes the largest id plus one), so the runs inserted since the last look are those with a
larger id than `report_progress` holds. Looking turns them into marks in one write
transaction; the commit pays nothing. (Were the newest runs deleted, by an erasure, before
the look, their ids could be taken again by new runs and those missed; the look takes
`id >= last` for that reason, and a worker that erased devices' history has no report left.)
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

import orjson

from shared.protocols.xsole import FrameType
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID
from shared.protocols.xsole.messages import LAYOUTS
from shared.reports.totals import FIELDS, Totals
from shared.store.reports import ActivityRow, DueHour, HeartbeatRow, PositionRow, ReportFrames, marked_hours
from shared.store.sqlite_runs import RUN_SPAN_S

T = TypeVar("T")
Key = tuple[int, int]  # a frame's (ts, seq)

LOOK_BATCH = 5000  # runs turned into marks per write transaction: a few ms of the writer ingestion shares
_COLUMNS = ", ".join(FIELDS)
_SUMS = ", ".join(f"sum({name})" for name in FIELDS)
_IN_IDS = "IN (SELECT value FROM json_each(?))"


class SqliteReports:
    SCHEMA = f"""
CREATE TABLE IF NOT EXISTS report_hours (
    device_id INTEGER NOT NULL, hour INTEGER NOT NULL, {", ".join(f"{name} REAL NOT NULL" for name in FIELDS)},
    PRIMARY KEY (device_id, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS report_marks (
    device_id INTEGER NOT NULL, hour INTEGER NOT NULL, PRIMARY KEY (device_id, hour)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS report_marks_by_hour ON report_marks(hour);
-- The id of the last frame run turned into marks.
CREATE TABLE IF NOT EXISTS report_progress (id INTEGER PRIMARY KEY CHECK (id = 1), last_run INTEGER NOT NULL);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def _mark_new_runs(self) -> None:
        """Turn the frame runs stored since the last look into marks, a batch per transaction."""

        def look(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT last_run FROM report_progress WHERE id = 1").fetchone()
            last = row[0] if row else 0
            runs = c.execute(
                "SELECT id, device_id, first_ts, last_ts FROM frame_runs WHERE id >= ? ORDER BY id LIMIT ?",
                (last, LOOK_BATCH),
            ).fetchall()
            if not runs or (len(runs) == 1 and runs[0][0] == last and row is not None):
                return False
            marks = {(device_id, hour) for _, device_id, lo, hi in runs for hour in marked_hours(lo, hi)}
            c.executemany("INSERT OR IGNORE INTO report_marks(device_id, hour) VALUES (?, ?)", marks)
            c.execute(
                "INSERT INTO report_progress(id, last_run) VALUES (1, ?)"
                " ON CONFLICT(id) DO UPDATE SET last_run = excluded.last_run",
                (runs[-1][0],),
            )
            return len(runs) == LOOK_BATCH

        while await self._write(look):
            pass

    async def report_hours_due(self, *, closed_before: int, limit: int) -> list[DueHour]:
        await self._mark_new_runs()
        rows = await self._read(
            lambda c: c.execute(
                "SELECT device_id, hour FROM report_marks WHERE hour < ? ORDER BY hour, device_id LIMIT ?",
                (closed_before, limit),
            ).fetchall()
        )
        return [DueHour(device_id, hour) for device_id, hour in rows]

    async def save_report_hours(self, summed: Sequence[tuple[DueHour, Totals]]) -> None:
        """Clearing a mark unconditionally is safe here: a frame stored after the hour's frames
        were read is in a run the next look has not seen, and it marks the hour again."""
        rows = [(due.device_id, due.hour, *totals.as_tuple()) for due, totals in summed]
        marks = [(due.device_id, due.hour) for due, _ in summed]

        def save(c: sqlite3.Connection) -> None:
            c.executemany(
                f"INSERT OR REPLACE INTO report_hours(device_id, hour, {_COLUMNS})"
                f" VALUES ({', '.join('?' * (len(FIELDS) + 2))})",
                rows,
            )
            c.executemany("DELETE FROM report_marks WHERE device_id = ? AND hour = ?", marks)

        await self._write(save)

    async def report_hours_pending(self, device_ids: Sequence[int], *, since: int, until: int) -> set[tuple[int, int]]:
        await self._mark_new_runs()
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT device_id, hour FROM report_marks WHERE device_id {_IN_IDS} AND hour >= ? AND hour < ?",
                (orjson.dumps(list(device_ids)), since, until),
            ).fetchall()
        )
        return {(device_id, hour) for device_id, hour in rows}

    async def report_hour_sums(self, device_ids: Sequence[int], *, since: int, until: int) -> dict[int, Totals]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT h.device_id, {_SUMS} FROM json_each(?) AS d CROSS JOIN report_hours AS h"
                " WHERE h.device_id = d.value AND h.hour >= ? AND h.hour < ? GROUP BY h.device_id",
                (orjson.dumps(list(device_ids)), since, until),
            ).fetchall()
        )
        return {row[0]: _totals(row[1:]) for row in rows}

    async def report_hour_totals(self, hours: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Totals]:
        wanted = orjson.dumps(list(hours))  # [[device id, hour], ...]: one statement, however many
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT h.device_id, h.hour, {_COLUMNS} FROM json_each(?) AS k CROSS JOIN report_hours AS h"
                " WHERE h.device_id = json_extract(k.value, '$[0]') AND h.hour = json_extract(k.value, '$[1]')",
                (wanted,),
            ).fetchall()
        )
        return {(row[0], row[1]): _totals(row[2:]) for row in rows}

    async def report_frames(self, device_ids: Sequence[int], *, since: int, until: int) -> dict[int, ReportFrames]:
        wanted = orjson.dumps(list(device_ids))
        return await self._read(lambda c: _report_frames(c, wanted, since, until))


def _report_frames(c: sqlite3.Connection, device_ids: bytes, since: int, until: int) -> dict[int, ReportFrames]:
    """The frames of the devices' runs in the range, each once (keyed by its ts and seq)."""
    found: dict[int, tuple[dict[Key, PositionRow], dict[Key, ActivityRow], dict[Key, HeartbeatRow]]] = {}
    for device_id, frames in c.execute(
        "SELECT f.device_id, f.frames FROM json_each(?) AS d CROSS JOIN frame_runs AS f"
        " WHERE f.device_id = d.value AND f.last_ts BETWEEN ? AND ? AND f.first_ts <= ?",
        (device_ids, since, until + RUN_SPAN_S, until),
    ):
        kept = found.get(device_id)
        if kept is None:
            kept = found[device_id] = ({}, {}, {})
        _read_frames(frames, since, until, *kept)
    return {
        device_id: ReportFrames(
            [row for _, row in sorted(positions.items())],
            [row for _, row in sorted(activities.items())],
            [row for _, row in sorted(heartbeats.items())],
        )
        for device_id, (positions, activities, heartbeats) in found.items()
    }


_HEADER = struct.Struct(">HBBHH")  # magic, version, type, length, seq
_POSITION = LAYOUTS[FrameType.POSITION][1].unpack_from
_ACTIVITY = LAYOUTS[FrameType.ACTIVITY][1].unpack_from
_HEARTBEAT_TS = struct.Struct(">I").unpack_from
_new = tuple.__new__


def _read_frames(
    frames: bytes,
    since: int,
    until: int,
    positions: dict[Key, PositionRow],
    activities: dict[Key, ActivityRow],
    heartbeats: dict[Key, HeartbeatRow],
) -> None:
    """A stored run's positions, activities and heartbeats in [since, until] into the dicts.

    Frame by frame from the header's type and length, the payload unpacked straight into the
    rows reports read: a month's report may read millions, and the general decoder (a frame
    buffer, the CRC, an event, a StoredPosition each) took four times as long. Stored runs hold
    only frames the listener took whole with their CRC checked; other types (an alarm, a command
    result) are stepped over, as the history readers do."""
    pos, end, header = 0, len(frames), _HEADER.unpack_from
    while pos + 8 <= end:
        _, _, frame_type, length, seq = header(frames, pos)
        payload = pos + 8
        pos = payload + length  # the length counts seq and payload; with the CRC the frame is 8 bytes more
        if frame_type == FrameType.POSITION:
            ts, lat, lon, _, speed, _, _, hdop, _, flags = _POSITION(frames, payload)
            if since <= ts <= until:
                valid, late = bool(flags & FLAG_FIX_VALID), bool(flags & FLAG_BUFFERED)
                positions[ts, seq] = _new(PositionRow, (ts, seq, lat, lon, speed, hdop, valid, late))
        elif frame_type == FrameType.ACTIVITY:
            ts, steps, state, _, _, flags = _ACTIVITY(frames, payload)
            if since <= ts <= until:
                activities[ts, seq] = _new(ActivityRow, (ts, seq, steps, state, bool(flags & FLAG_BUFFERED)))
        elif frame_type == FrameType.HEARTBEAT:
            (ts,) = _HEARTBEAT_TS(frames, payload)
            if since <= ts <= until:
                heartbeats[ts, seq] = _new(HeartbeatRow, (ts, seq))


def _totals(row: Sequence[float]) -> Totals:
    return Totals.of(row)

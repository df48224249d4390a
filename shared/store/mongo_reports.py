"""MongoDB adapter, reports' hour totals (a mixin of MongoStore; see shared/store/reports.py).

The commit marks the hours its frames touch (`mark_report_hours`, upserts into `report_marks`,
each bumping the mark's `v`); a mark is cleared only if its `v` is still the one read when the
hour was summed, so a frame stored meanwhile leaves it marked. Two workers summing the same
hour store the same totals.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import DeleteOne, IndexModel, UpdateOne

from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID
from shared.reports.totals import FIELDS, Totals
from shared.store.reports import ActivityRow, DueHour, HeartbeatRow, PositionRow, ReportFrames, marked_hours

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def _key(device_id: int, hour: int) -> str:
    return f"{device_id}:{hour}"


def mark_report_hours(frames: Iterable[tuple[int, int]]) -> list[UpdateOne]:
    """The upserts marking the hours that frames of (device id, device ts) touch."""
    marks = {(device_id, hour) for device_id, ts in frames for hour in marked_hours(ts, ts)}
    return [UpdateOne({"_id": _key(d, h)}, {"$set": {"d": d, "h": h}, "$inc": {"v": 1}}, upsert=True) for d, h in marks]


class MongoReports:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        "report_marks": [IndexModel([("h", 1)]), IndexModel([("d", 1), ("h", 1)])],
        "report_hours": [IndexModel([("d", 1), ("h", 1)], unique=True)],
    }

    if TYPE_CHECKING:  # provided by MongoStore
        _db: AsyncDatabase[Document]

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...

    async def report_hours_due(self, *, closed_before: int, limit: int) -> list[DueHour]:
        async with self._read() as db:
            docs = await db.report_marks.find({"h": {"$lt": closed_before}}).sort("h", 1).limit(limit).to_list(None)
        return [DueHour(doc["d"], doc["h"], doc["v"]) for doc in docs]

    async def save_report_hours(self, summed: Sequence[tuple[DueHour, Totals]]) -> None:
        if not summed:
            return
        async with self._write() as db:
            await db.report_hours.bulk_write(
                [
                    UpdateOne(
                        {"_id": _key(due.device_id, due.hour)},
                        {"$set": {"d": due.device_id, "h": due.hour, **_fields(totals)}},
                        upsert=True,
                    )
                    for due, totals in summed
                ],
                ordered=False,
            )
            await db.report_marks.bulk_write(
                [DeleteOne({"_id": _key(due.device_id, due.hour), "v": due.mark}) for due, _ in summed], ordered=False
            )

    async def report_hours_pending(self, device_ids: Sequence[int], *, since: int, until: int) -> set[tuple[int, int]]:
        async with self._read() as db:
            docs = await db.report_marks.find(
                {"d": {"$in": list(device_ids)}, "h": {"$gte": since, "$lt": until}}, {"d": 1, "h": 1}
            ).to_list(None)
        return {(doc["d"], doc["h"]) for doc in docs}

    async def report_hour_sums(self, device_ids: Sequence[int], *, since: int, until: int) -> dict[int, Totals]:
        pipeline: list[Document] = [
            {"$match": {"d": {"$in": list(device_ids)}, "h": {"$gte": since, "$lt": until}}},
            {"$group": {"_id": "$d", **{name: {"$sum": f"${name}"} for name in FIELDS}}},
        ]
        async with self._read() as db:
            docs = await (await db.report_hours.aggregate(pipeline)).to_list(None)
        return {doc["_id"]: _totals(doc) for doc in docs}

    async def report_hour_totals(self, hours: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Totals]:
        keys = [_key(d, h) for d, h in hours]
        if not keys:
            return {}
        async with self._read() as db:
            docs = await db.report_hours.find({"_id": {"$in": keys}}).to_list(None)
        return {(doc["d"], doc["h"]): _totals(doc) for doc in docs}

    async def report_frames(self, device_ids: Sequence[int], *, since: int, until: int) -> dict[int, ReportFrames]:
        """Three queries for all the devices (positions, activities, heartbeats), each by its
        (device, time) index. A position stored twice (a commit retried between the position and
        its key, mongo_ingest.py) is kept once: rows are keyed by (ts, seq)."""
        wanted = {"$in": list(device_ids)}
        positions: dict[int, dict[tuple[int, int], PositionRow]] = {}
        activities: dict[int, dict[tuple[int, int], ActivityRow]] = {}
        heartbeats: dict[int, dict[tuple[int, int], HeartbeatRow]] = {}
        async with self._read() as db:
            span = {"$gte": _instant(since), "$lte": _instant(until)}
            async for doc in db.positions.find({"device_id": wanted, "time": span}, _POSITION_FIELDS):
                ts, seq, flags = calendar.timegm(doc["time"].utctimetuple()), doc["seq"], doc["flags"]
                positions.setdefault(doc["device_id"], {})[ts, seq] = PositionRow(
                    ts,
                    seq,
                    doc["lat_e7"],
                    doc["lon_e7"],
                    doc["speed_cms"],
                    doc["hdop_d"],
                    bool(flags & FLAG_FIX_VALID),
                    bool(flags & FLAG_BUFFERED),
                )
            ts_span = {"$gte": since, "$lte": until}
            async for doc in db.activities.find({"device_id": wanted, "ts": ts_span}, _ACTIVITY_FIELDS):
                key = (doc["ts"], doc["seq"])
                row = ActivityRow(*key, doc["steps"], doc["state"], bool(doc["flags"] & FLAG_BUFFERED))
                activities.setdefault(doc["device_id"], {})[key] = row
            async for doc in db.heartbeats.find({"device_id": wanted, "ts": ts_span}, _HEARTBEAT_FIELDS):
                key = (doc["ts"], doc["seq"])
                heartbeats.setdefault(doc["device_id"], {})[key] = HeartbeatRow(*key)
        return {
            device_id: ReportFrames(
                [row for _, row in sorted(positions.get(device_id, {}).items())],
                [row for _, row in sorted(activities.get(device_id, {}).items())],
                [row for _, row in sorted(heartbeats.get(device_id, {}).items())],
            )
            for device_id in device_ids
            if device_id in positions or device_id in activities or device_id in heartbeats
        }


_POSITION_FIELDS = {
    name: 1 for name in ("device_id", "time", "seq", "lat_e7", "lon_e7", "speed_cms", "hdop_d", "flags")
}
_ACTIVITY_FIELDS = {name: 1 for name in ("device_id", "ts", "seq", "steps", "state", "flags")}
_HEARTBEAT_FIELDS = {name: 1 for name in ("device_id", "ts", "seq")}


def _instant(ts: int) -> datetime:
    """Device time as a BSON date: ranges beyond what a date can hold end at its first or last day."""
    return datetime.fromtimestamp(min(max(ts, -62135596800), 253402300799), UTC)


def _fields(totals: Totals) -> Document:
    return dict(zip(FIELDS, totals.as_tuple(), strict=True))


def _totals(doc: Document) -> Totals:
    return Totals.of([doc[name] for name in FIELDS])

"""MongoDB adapter, reports' hour totals (a mixin of MongoStore; see shared/store/reports.py).

The commit marks the hours its frames touch (`mark_report_hours`, upserts into `report_marks`,
each bumping the mark's `v`); a mark is cleared only if its `v` is still the one read when the
hour was summed, so a frame stored meanwhile leaves it marked. Two workers summing the same
hour store the same totals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import DeleteOne, IndexModel, UpdateOne

from shared.reports.totals import FIELDS, Totals
from shared.store.reports import ActivityRow, DueHour, HeartbeatRow, PositionRow, ReportFrames, marked_hours

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from shared.store.telemetry import StoredActivity, StoredHeartbeat, StoredPosition

Document = dict[str, Any]
FRAME_LIMIT = 1_000_000  # a device's frames in one summed span: at most ~2 hours, far below this


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

    if TYPE_CHECKING:  # provided by MongoStore and MongoIngest
        _db: AsyncDatabase[Document]

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def positions(
            self, device_id: int, *, since: int | None = None, until: int | None = None, limit: int = 100
        ) -> list[StoredPosition]: ...
        async def activities(
            self, device_id: int, *, since: int | None = None, until: int | None = None, limit: int = 100
        ) -> list[StoredActivity]: ...
        async def heartbeats(
            self, device_id: int, *, since: int | None = None, until: int | None = None, limit: int = 100
        ) -> list[StoredHeartbeat]: ...

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
        found = {}
        for device_id in device_ids:  # the adapter's readers, whose paging removes the copies a retry may leave
            positions = await self.positions(device_id, since=since, until=until, limit=FRAME_LIMIT)
            activities = await self.activities(device_id, since=since, until=until, limit=FRAME_LIMIT)
            heartbeats = await self.heartbeats(device_id, since=since, until=until, limit=FRAME_LIMIT)
            frames = ReportFrames(
                [
                    PositionRow(p.ts, p.seq, p.lat_e7, p.lon_e7, p.speed_cms, p.hdop_d, p.fix_valid, p.buffered)
                    for p in positions
                ],
                [ActivityRow(a.ts, a.seq, a.steps, a.state, a.buffered) for a in activities],
                [HeartbeatRow(h.ts, h.seq) for h in heartbeats],
            )
            if any(frames):
                found[device_id] = frames
        return found


def _fields(totals: Totals) -> Document:
    return dict(zip(FIELDS, totals.as_tuple(), strict=True))


def _totals(doc: Document) -> Totals:
    return Totals.of([doc[name] for name in FIELDS])

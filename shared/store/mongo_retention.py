"""MongoDB adapter, retention (a mixin of MongoStore).

Each tenant keeps its data for its own number of days, so nothing here is a
TTL index (one expiry per collection, the same for every tenant): a chunk
finds at most `limit` expired documents of a collection by index and deletes
them by `_id`. Positions live in a time-series collection, where deleting by
a filter on the time field needs MongoDB 7.0 (docs/storage.md).

Without transactions the order makes a purge stopped half way safe to
repeat: positions go before their keys (a key left alone only refuses a copy
of a frame already past its retention), and an alert's timeline,
notifications and alarm before the alert, which keeps it matching until the
last step.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.store.mongo_devices import _ERASE_BY_ALERT as ERASE_BY_ALERT  # what goes with an alert
from shared.store.mongo_reports import mark_report_hours
from shared.store.reports import HOUR_S, hour_of
from shared.store.retention import PurgeChunk

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]
TELEMETRY_COLLECTIONS = (("heartbeats", "ts"), ("activities", "ts"))  # (collection, its device-time field)


class MongoRetention:
    if TYPE_CHECKING:  # provided by MongoStore

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...

    async def purge_telemetry(self, tenant_id: int | None, before: int, *, limit: int = 500) -> PurgeChunk:
        deleted: dict[str, int] = {}
        more = False
        async with self._write() as db:
            devices = {"$in": await _devices(db, tenant_id, before)}
            found = await _ids(db.positions, {"device_id": devices, "time": {"$lt": _datetime(before)}}, limit)
            if found:
                deleted["positions"] = (await db.positions.delete_many({"_id": {"$in": found}})).deleted_count
            # The keys of the positions just deleted, and of any a stopped purge left behind.
            keys = await _ids(db.position_keys, {"device_id": devices, "ts": {"$lt": before}}, limit)
            if keys:
                await db.position_keys.delete_many({"_id": {"$in": keys}})
            more = len(found) == limit or len(keys) == limit
            for collection, ts in TELEMETRY_COLLECTIONS:
                found = await _ids(db[collection], {"device_id": devices, ts: {"$lt": before}}, limit)
                if found:
                    deleted[collection] = (await db[collection].delete_many({"_id": {"$in": found}})).deleted_count
                more = more or len(found) == limit
            if not more:  # the frames are gone: so are the reports' hours summed from them
                await _forget_report_hours(db, devices, before)
        return PurgeChunk({kind: count for kind, count in deleted.items() if count}, more)

    async def purge_alerts(self, tenant_id: int, resolved_before: float, *, limit: int = 200) -> PurgeChunk:
        # An alert whose change is not yet announced (finished at open) waits for the next purge.
        query = {
            "tenant_id": tenant_id,
            "status": "resolved",
            "resolved_at": {"$lt": resolved_before},
            "pending_changes.change": {"$exists": False},
        }
        async with self._write() as db:
            alerts = await db.alerts.find(query, {"_id": 1, "alarm_id": 1}).limit(limit).to_list(None)
            if not alerts:
                return PurgeChunk()
            ids = {"$in": [alert["_id"] for alert in alerts]}
            deleted: dict[str, int] = {}
            for collection in ERASE_BY_ALERT:
                result = await db[collection].delete_many({"alert_id": ids})
                if collection in ("alert_events", "notifications"):
                    deleted[collection] = result.deleted_count
            await db.escalations.delete_many({"_id": ids})
            alarms = [alert["alarm_id"] for alert in alerts if "alarm_id" in alert]
            if alarms:
                await db.alarms.delete_many({"_id": {"$in": alarms}})
            deleted["alerts"] = (await db.alerts.delete_many({"_id": ids, "status": "resolved"})).deleted_count
        return PurgeChunk(deleted, len(alerts) == limit)


async def _devices(db: AsyncDatabase[Document], tenant_id: int | None, before: int) -> list[int]:
    """The tenant's device ids; for None, those with telemetry before `before` whose device is gone."""
    if tenant_id is not None:
        return [doc["_id"] async for doc in db.devices.find({"tenant_id": tenant_id}, {"_id": 1})]
    registered = {doc["_id"] async for doc in db.devices.find({}, {"_id": 1})}
    stored: set[int] = set()
    for collection, ts in (("position_keys", "ts"), *TELEMETRY_COLLECTIONS):
        stored.update(await db[collection].distinct("device_id", {ts: {"$lt": before}}))
    return sorted(stored - registered)


async def _ids(collection: Any, query: Document, limit: int) -> list[Any]:
    return [doc["_id"] async for doc in collection.find(query, {"_id": 1}).limit(limit)]


def _datetime(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def _forget_report_hours(db: AsyncDatabase[Document], devices: Document, before: int) -> None:
    """Delete the hour totals of hours wholly before `before`; the hour it falls in is summed again
    from the frames left (marked, as a late frame marks it)."""
    await db.report_hours.delete_many({"d": devices, "h": {"$lte": before - HOUR_S}})
    straddling = await db.report_hours.find({"d": devices, "h": hour_of(before)}, {"d": 1}).to_list(None)
    if straddling:
        await db.report_marks.bulk_write(mark_report_hours((doc["d"], before) for doc in straddling), ordered=False)

"""MongoDB adapter, detected alerts (a mixin of MongoStore): one active alert per detection key.

Without transactions, the order makes crashes harmless: the key is reserved
(`detections`, keyed by it) before its alert is inserted, and on clearing the
alert is resolved before the key is freed. A key left pointing at a missing
or resolved alert is stale: the next raise replaces it.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from pymongo.errors import DuplicateKeyError

from shared.store.alerts import Alert
from shared.store.audit import AuditEntry
from shared.store.detections import SYSTEM_ACTOR, DetectedCondition
from shared.store.mongo_alerts import _alert, _alert_doc, _announcement

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


class MongoDetections:
    if TYPE_CHECKING:  # provided by MongoStore and MongoAlerts

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_id(self, name: str) -> int: ...
        async def _announce_changes(self, doc: Document) -> set[str]: ...
        async def resolve_alert(
            self, tenant_id: int, alert_id: int, *, by: str, note: str | None = None, audit: AuditEntry | None = None
        ) -> Alert | None: ...

    async def raise_detected_alert(self, condition: DetectedCondition) -> tuple[Alert, bool]:
        async with self._write() as db:
            while True:
                reserved = await db.detections.find_one({"_id": condition.key})
                if reserved is not None:
                    doc = await db.alerts.find_one({"_id": reserved["alert_id"]})
                    if doc is not None and doc["status"] != "resolved":
                        announced = await self._announce_changes(doc)  # finish what a crash left unsaid
                        return _alert(doc), "created" in announced
                    # Stale: resolved by a person, or its alert was never inserted.
                    await db.detections.delete_one({"_id": condition.key, "alert_id": reserved["alert_id"]})
                alert_id = await self._new_id("alerts")
                try:
                    await db.detections.insert_one({"_id": condition.key, "alert_id": alert_id})
                except DuplicateKeyError:
                    continue  # raised concurrently: return that one
                now = time.time()
                alert = Alert(
                    alert_id,
                    condition.tenant_id,
                    condition.device_id,
                    condition.imei,
                    condition.kind,
                    condition.ts,
                    condition.lat,
                    condition.lon,
                    condition.battery,
                    "open",
                    now,
                )
                created = _announcement(
                    alert,
                    "created",
                    action="raised",
                    actor=SYSTEM_ACTOR,
                    at=now,
                    detail={"kind": alert.kind, "detected": condition.key, **(condition.detail or {})},
                )
                doc = {**_alert_doc(alert), "pending_changes": [created]}
                await db.alerts.insert_one(doc)
                announced = await self._announce_changes(doc)
                return alert, "created" in announced

    async def clear_detected_alert(self, key: str, *, note: str) -> Alert | None:
        async with self._write() as db:
            reserved = await db.detections.find_one({"_id": key})
            if reserved is None:
                return None
            doc = await db.alerts.find_one({"_id": reserved["alert_id"]})
        resolved = None
        if doc is not None:
            resolved = await self.resolve_alert(doc["tenant_id"], doc["_id"], by=SYSTEM_ACTOR, note=note)
        async with self._write() as db:
            await db.detections.delete_one({"_id": key, "alert_id": reserved["alert_id"]})
        return resolved

"""MongoDB adapter, alerting half: alerts, timeline, contacts, notifications (a mixin of MongoStore).

Every alert creation or status change is announced: a timeline line and an
`alert` outbox message, once per change. SQLite writes all three in one
transaction; here the change itself and its announcement go in one
single-document write (the alert, with the announcement in `pending_changes`),
which is atomic. Then:

1. the timeline line is inserted, keyed by (alert, change): a repeat is skipped;
2. the outbox message is queued, keyed by alert and change;
3. the webhook deliveries are owed, keyed by endpoint and an event id derived
   from the alert and the change: a repeat is skipped;
4. the announcement is pulled from `pending_changes`.

A stop anywhere leaves the announcement pending, and whoever next touches the
alert (the alarm delivered again, an acknowledgement retried, or the next
`open()`) finishes it. Only a stop between 2 and 4, after the relay has taken
the message away, can queue the same message twice; dashboards and notifiers
key on the alert id and status.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from pymongo import IndexModel
from pymongo.errors import DuplicateKeyError

from shared.alerts.ledger import NotificationRecord
from shared.alerts.serialize import alarm_raised_detail, alert_to_api
from shared.store.alerts import (
    TOPIC_ALERT,
    Alert,
    AlertEvent,
    AlertStatus,
    AlertTransitionRefused,
    Contact,
    delivery_status_detail,
    delivery_status_is_news,
)
from shared.store.audit import AuditEntry
from shared.store.mongo_audit import with_audit
from shared.store.webhooks import WebhookEvent
from shared.webhook_events import alert_change_event

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]

_ALERT_FIELDS = tuple(field.name for field in fields(Alert) if field.name != "id")
_NOTIFICATION_KEY = ("alert_id", "contact_id", "channel", "step")


def _alert(doc: Document) -> Alert:
    stored: dict[str, Any] = {name: doc[name] for name in _ALERT_FIELDS if name != "alarm_id"}
    return Alert(doc["_id"], **stored, alarm_id=doc.get("alarm_id"))  # absent: a detected alert (see _alert_doc)


def _alert_doc(alert: Alert) -> Document:
    doc = {"_id": alert.id, **{name: getattr(alert, name) for name in _ALERT_FIELDS}}
    if alert.alarm_id is None:
        # Absent rather than null: the unique index on alarm_id covers only alerts that have one.
        del doc["alarm_id"]
    return doc


def _announcement(
    alert: Alert, change: str, *, action: str, actor: str | None, at: float, detail: dict[str, Any]
) -> Document:
    """What a change must tell: its timeline line and its outbox message."""
    payload = orjson.dumps({"event": change, "tenant_id": alert.tenant_id, "alert": alert_to_api(alert)})
    return {
        "change": change,
        "payload": payload,
        "line": {"at": at, "action": action, "actor": actor, "detail": detail},
    }


def _contact(doc: Document) -> Contact:
    return Contact(
        doc["_id"], doc["tenant_id"], doc["name"], doc["email"], doc["phone"], tuple(doc["kinds"]), doc["created_at"]
    )


def _notification(doc: Document) -> NotificationRecord:
    return NotificationRecord(
        doc["alert_id"],
        doc["tenant_id"],
        doc["contact_id"],
        doc["channel"],
        doc["step"],
        doc["status"],
        doc["attempts"],
        doc["error"],
        doc["updated_at"],
    )


class MongoAlerts:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        "alerts": [
            # One alert per alarm, however often the alarm is delivered.
            IndexModel(
                "alarm_id", name="alerts_by_alarm", unique=True, partialFilterExpression={"alarm_id": {"$exists": True}}
            ),
            IndexModel([("tenant_id", 1), ("_id", 1)], name="alerts_by_tenant"),
            IndexModel([("tenant_id", 1), ("status", 1), ("_id", 1)], name="alerts_by_status"),
            IndexModel([("tenant_id", 1), ("imei", 1), ("_id", 1)], name="alerts_by_imei"),
            IndexModel([("device_id", 1), ("ts", 1)], name="alerts_by_device"),
            IndexModel([("tenant_id", 1), ("ts", 1)], name="alerts_by_tenant_ts"),
        ],
        "alert_events": [
            IndexModel([("alert_id", 1), ("at", 1)], name="alert_events_by_alert"),
            # A change's line is written once, however often its announcement is retried.
            IndexModel(
                [("alert_id", 1), ("change", 1)],
                name="alert_events_by_change",
                unique=True,
                partialFilterExpression={"change": {"$exists": True}},
            ),
        ],
        "contacts": [IndexModel([("tenant_id", 1), ("_id", 1)], name="contacts_by_tenant")],
        # One document per notification: its key is the exactly-once guarantee (claim = insert).
        "notifications": [
            IndexModel(list(_NOTIFICATION_KEY), name="notifications_by_key", unique=True),
            IndexModel([("status", 1), ("updated_at", 1)], name="notifications_unfinished"),
            # Delivery status callbacks name a notification by the provider's id (a Twilio message SID).
            IndexModel(
                "provider_id",
                name="notifications_by_provider_id",
                partialFilterExpression={"provider_id": {"$exists": True}},
            ),
        ],
    }

    if TYPE_CHECKING:  # provided by MongoStore
        _db: AsyncDatabase[Document]

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_id(self, name: str) -> int: ...
        async def _insert_new(self, collection: str, docs: list[Document]) -> None: ...
        async def _audit_doc(self, entry: AuditEntry) -> Document: ...
        async def _settle_audit(self, collection: str, doc: Document | None) -> None: ...
        async def _audited_delete(self, collection: str, query: Document, entry: AuditEntry | None) -> bool: ...
        async def _append_outbox(self, entries: Sequence[tuple[str, bytes, str | None]]) -> None: ...
        async def owe_webhook_event(self, event: WebhookEvent, *, at: float) -> int: ...

    # -- alerts ---------------------------------------------------------------------

    async def raise_alert_from_alarm(self, alarm: dict[str, Any]) -> tuple[Alert, bool]:
        """The alert for an `alarm` bus message; True for the one call that announced
        its creation (the first, unless that one stopped before announcing it)."""
        async with self._write() as db:
            doc = await db.alerts.find_one({"alarm_id": alarm["alarm_id"]})
            if doc is None:
                now = time.time()
                alert = Alert(
                    await self._new_id("alerts"),
                    alarm["tenant_id"],
                    alarm["device_id"],
                    alarm["imei"],
                    alarm["kind"],
                    int(alarm["ts"]),
                    alarm.get("lat"),
                    alarm.get("lon"),
                    alarm.get("battery"),
                    "open",
                    now,
                    alarm_id=alarm["alarm_id"],
                )
                created = _announcement(
                    alert, "created", action="raised", actor=None, at=now, detail=alarm_raised_detail(alarm)
                )
                doc = {**_alert_doc(alert), "pending_changes": [created]}
                try:
                    await db.alerts.insert_one(doc)
                except DuplicateKeyError:  # a concurrent delivery of the same alarm stored it first
                    doc = await db.alerts.find_one({"alarm_id": alarm["alarm_id"]})
                    assert doc is not None, "alerts are never deleted"
            announced = await self._announce_changes(doc)
            return _alert(doc), "created" in announced

    async def alert(self, tenant_id: int, alert_id: int) -> Alert | None:
        async with self._read() as db:
            doc = await db.alerts.find_one({"_id": alert_id, "tenant_id": tenant_id})
        return _alert(doc) if doc else None

    async def alerts(
        self,
        tenant_id: int,
        *,
        status: AlertStatus | None = None,
        imei: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Alert]:
        query: Document = {"tenant_id": tenant_id}
        if status is not None:
            query["status"] = status
        if before_id is not None:
            query["_id"] = {"$lt": before_id}
        async with self._read() as db:
            if imei is not None:
                # The device registered under that IMEI now: a retired one's alerts are not its successor's.
                device = await db.devices.find_one({"imei": imei}, {"_id": 1})
                query["imei"], query["device_id"] = imei, device["_id"] if device else None
            docs = await db.alerts.find(query).sort("_id", -1).limit(limit).to_list(None)
        return [_alert(doc) for doc in docs]

    async def alerts_overlapping(
        self, device_ids: Sequence[int], *, start: float | None = None, end: float | None = None
    ) -> list[Alert]:
        if not device_ids:
            return []
        query: Document = {"device_id": {"$in": list(device_ids)}}
        if end is not None:
            query["ts"] = {"$lte": end}
        if start is not None:
            query["$or"] = [{"resolved_at": None}, {"resolved_at": {"$gte": start}}]
        async with self._read() as db:
            docs = await db.alerts.find(query).sort([("ts", 1), ("_id", 1)]).to_list(None)
        return [_alert(doc) for doc in docs]

    async def alerts_raised(
        self, tenant_id: int, *, since: float, until: float, device_id: int | None = None
    ) -> list[Alert]:
        query: Document = {"tenant_id": tenant_id, "ts": {"$gte": since, "$lt": until}}
        if device_id is not None:
            query["device_id"] = device_id
        async with self._read() as db:
            docs = await db.alerts.find(query).sort([("ts", 1), ("_id", 1)]).to_list(None)
        return [_alert(doc) for doc in docs]

    async def alert_escalations(self, alert_ids: Sequence[int]) -> dict[int, int]:
        counts: dict[int, int] = {}
        async with self._read() as db:
            # In slices, so each query document stays small; only the ids come back, counted here
            # (a plain find rather than an aggregation, which the emulator cannot await).
            for start in range(0, len(alert_ids), 1000):
                chunk = list(alert_ids[start : start + 1000])
                query = {"alert_id": {"$in": chunk}, "action": "escalated"}
                async for doc in db.alert_events.find(query, {"alert_id": 1, "_id": 0}):
                    counts[doc["alert_id"]] = counts.get(doc["alert_id"], 0) + 1
        return counts

    async def acknowledge_alert(
        self,
        tenant_id: int,
        alert_id: int,
        *,
        by: str,
        detail: dict[str, Any] | None = None,
        audit: AuditEntry | None = None,
    ) -> Alert | None:
        async with self._write():
            while True:
                alert = await self._current_alert(tenant_id, alert_id)
                if alert is None or alert.status == "acknowledged":
                    return alert  # acknowledging twice changes nothing and tells nobody
                if alert.status == "resolved":
                    raise AlertTransitionRefused(f"alert {alert_id} is resolved")
                now = time.time()
                changed = replace(alert, status="acknowledged", acknowledged_at=now, acknowledged_by=by)
                if await self._change_alert(
                    alert,
                    changed,
                    _announcement(
                        changed, "acknowledged", action="acknowledged", actor=by, at=now, detail=detail or {}
                    ),
                    audit,
                ):
                    return changed

    async def resolve_alert(
        self, tenant_id: int, alert_id: int, *, by: str, note: str | None = None, audit: AuditEntry | None = None
    ) -> Alert | None:
        async with self._write():
            while True:
                alert = await self._current_alert(tenant_id, alert_id)
                if alert is None or alert.status == "resolved":
                    return alert
                now = time.time()
                changed = replace(alert, status="resolved", resolved_at=now, resolved_by=by, resolution_note=note)
                if await self._change_alert(
                    alert,
                    changed,
                    _announcement(
                        changed, "resolved", action="resolved", actor=by, at=now, detail={"note": note} if note else {}
                    ),
                    audit,
                ):
                    return changed

    async def alert_timeline(self, tenant_id: int, alert_id: int) -> list[AlertEvent]:
        async with self._read() as db:
            if await db.alerts.find_one({"_id": alert_id, "tenant_id": tenant_id}, {"_id": 1}) is None:
                return []
            # By time: a line whose announcement was finished late still shows when its change happened.
            docs = await db.alert_events.find({"alert_id": alert_id}).sort([("at", 1), ("_id", 1)]).to_list(None)
        return [AlertEvent(alert_id, doc["at"], doc["action"], doc["actor"], doc["detail"]) for doc in docs]

    async def add_alert_event(self, alert_id: int, *, action: str, actor: str | None, detail: dict[str, Any]) -> None:
        async with self._write() as db:
            await db.alert_events.insert_one(
                {"alert_id": alert_id, "at": time.time(), "action": action, "actor": actor, "detail": detail}
            )

    async def _current_alert(self, tenant_id: int, alert_id: int) -> Alert | None:
        """The tenant's alert, once any change an earlier call left unannounced is announced
        (so its line and message come before those of the next change)."""
        doc = await self._db.alerts.find_one({"_id": alert_id, "tenant_id": tenant_id})
        if doc is None:
            return None
        await self._announce_changes(doc)
        return _alert(doc)

    async def _change_alert(
        self, alert: Alert, changed: Alert, announcement: Document, audit: AuditEntry | None = None
    ) -> bool:
        """Store a status change with its announcement and audit entry (one document write),
        then announce it and settle the entry; False when the alert's status moved meanwhile
        (the caller looks again, and nothing of this attempt was written)."""
        fields_changed = {
            name: getattr(changed, name) for name in _ALERT_FIELDS if getattr(changed, name) != getattr(alert, name)
        }
        entry = None if audit is None else await self._audit_doc(audit)
        result = await self._db.alerts.update_one(
            {"_id": alert.id, "status": alert.status},
            with_audit({"$set": fields_changed, "$push": {"pending_changes": announcement}}, entry),
        )
        if result.matched_count == 0:
            return False
        await self._announce_changes({"_id": alert.id, "pending_changes": [announcement]})
        await self._settle_audit("alerts", entry)
        return True

    async def _announce_changes(self, doc: Document) -> set[str]:
        """Announce an alert's pending changes (module docstring); the changes this call cleared."""
        pending = doc.get("pending_changes") or []
        if not pending:
            return set()
        alert_id = doc["_id"]
        await self._insert_new(
            "alert_events",
            [
                {"alert_id": alert_id, "change": announcement["change"], **announcement["line"]}
                for announcement in pending
            ],
        )
        await self._append_outbox(
            [
                (TOPIC_ALERT, announcement["payload"], f"alert:{alert_id}:{announcement['change']}")
                for announcement in pending
            ]
        )
        for announcement in pending:
            told = orjson.loads(announcement["payload"])
            event = alert_change_event(told["tenant_id"], told["event"], told["alert"])
            if event is not None:
                await self.owe_webhook_event(event, at=announcement["line"]["at"])
        cleared = set()
        for announcement in pending:
            change = announcement["change"]
            result = await self._db.alerts.update_one(
                {"_id": alert_id, "pending_changes.change": change},
                {"$pull": {"pending_changes": {"change": change}}},
            )
            if result.modified_count:
                cleared.add(change)
        return cleared

    async def _finish_alert_changes(self) -> None:
        """Announce the changes a stopped process left pending (at open)."""
        for doc in await self._db.alerts.find({"pending_changes.change": {"$exists": True}}).sort("_id").to_list(None):
            await self._announce_changes(doc)

    # -- contacts -------------------------------------------------------------------

    async def add_contact(
        self,
        *,
        tenant_id: int,
        name: str,
        email: str | None,
        phone: str | None,
        kinds: tuple[str, ...],
        audit: AuditEntry | None = None,
    ) -> Contact:
        async with self._write() as db:
            contact = Contact(await self._new_id("contacts"), tenant_id, name, email, phone, tuple(kinds), time.time())
            entry = None if audit is None else await self._audit_doc(replace(audit, target_id=str(contact.id)))
            await db.contacts.insert_one(
                with_audit(
                    {
                        "_id": contact.id,
                        "tenant_id": tenant_id,
                        "name": name,
                        "email": email,
                        "phone": phone,
                        "kinds": list(kinds),
                        "created_at": contact.created_at,
                    },
                    entry,
                )
            )
            await self._settle_audit("contacts", entry)
            return contact

    async def contacts(self, tenant_id: int) -> list[Contact]:
        async with self._read() as db:
            docs = await db.contacts.find({"tenant_id": tenant_id}).sort("_id").to_list(None)
        return [_contact(doc) for doc in docs]

    async def delete_contact(self, tenant_id: int, contact_id: int, *, audit: AuditEntry | None = None) -> bool:
        async with self._write():
            return await self._audited_delete("contacts", {"_id": contact_id, "tenant_id": tenant_id}, audit)

    # -- notifications ----------------------------------------------------------------

    async def claim_notification(self, *, alert_id: int, contact_id: int, channel: str, step: int) -> bool:
        async with self._write() as db:
            # The tenant is kept with the claim, so records list without a lookup (SQLite joins).
            alert = await db.alerts.find_one({"_id": alert_id}, {"tenant_id": 1})
            if alert is None:
                raise ValueError(f"no alert with id {alert_id}")
            now = time.time()
            try:
                await db.notifications.insert_one(
                    {
                        "alert_id": alert_id,
                        "contact_id": contact_id,
                        "channel": channel,
                        "step": step,
                        "tenant_id": alert["tenant_id"],
                        "status": "claimed",
                        "attempts": 0,
                        "error": None,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            except DuplicateKeyError:
                return False
            return True

    async def finish_notification(
        self,
        *,
        alert_id: int,
        contact_id: int,
        channel: str,
        step: int,
        status: str,
        attempts: int,
        error: str | None = None,
        provider_id: str | None = None,
    ) -> None:
        # Also called with status 'claimed' between attempts: that touch keeps the
        # claim from looking abandoned while its sender is still retrying.
        change: Document = {"status": status, "attempts": attempts, "error": error, "updated_at": time.time()}
        if provider_id is not None:  # absent otherwise: the provider_id index covers only sent notifications
            change["provider_id"] = provider_id
        async with self._write() as db:
            await db.notifications.update_one(
                {"alert_id": alert_id, "contact_id": contact_id, "channel": channel, "step": step},
                {"$set": change},
            )

    async def record_delivery_status(self, *, provider_id: str, status: str, error_code: str | None) -> int | None:
        async with self._write() as db:
            while True:
                doc = await db.notifications.find_one({"provider_id": provider_id})
                if doc is None:
                    return None
                alert_id: int = doc["alert_id"]
                previous = doc.get("delivery_status")
                if not delivery_status_is_news(previous, status):
                    return alert_id
                now = time.time()
                # Compare-and-set on the status read, so of two callbacks at once each is judged on the other's result.
                result = await db.notifications.update_one(
                    {"_id": doc["_id"], "delivery_status": previous},
                    {"$set": {"delivery_status": status, "delivery_error_code": error_code, "updated_at": now}},
                )
                if result.modified_count == 1:
                    break
            contact = await db.contacts.find_one({"_id": doc["contact_id"]}, {"name": 1})
            detail = delivery_status_detail(
                provider_id=provider_id,
                status=status,
                error_code=error_code,
                channel=doc["channel"],
                contact_id=doc["contact_id"],
                contact=contact["name"] if contact else None,
            )
            await db.alert_events.insert_one(
                {"alert_id": alert_id, "at": now, "action": "delivery_status", "actor": None, "detail": detail}
            )
            return alert_id

    async def unfinished_notifications(self, *, stale_before: float, limit: int = 100) -> list[NotificationRecord]:
        async with self._read() as db:
            docs = (
                await db.notifications.find(
                    {
                        "$or": [
                            {"status": "interrupted"},
                            {"status": "claimed", "updated_at": {"$lt": stale_before}},
                        ]
                    }
                )
                .sort("updated_at")
                .limit(limit)
                .to_list(None)
            )
        return [_notification(doc) for doc in docs]

    async def reclaim_notification(self, record: NotificationRecord) -> bool:
        # Compare-and-set on the record exactly as listed: of several processes
        # recovering at once, one wins; a sender that touched its claim since keeps it.
        async with self._write() as db:
            result = await db.notifications.update_one(
                {
                    "alert_id": record.alert_id,
                    "contact_id": record.contact_id,
                    "channel": record.channel,
                    "step": record.step,
                    "status": record.status,
                    "updated_at": record.updated_at,
                },
                {"$set": {"status": "claimed", "updated_at": max(time.time(), record.updated_at + 1e-3)}},
            )
            return result.modified_count == 1

    async def notifications_of(self, tenant_id: int, alert_id: int) -> list[NotificationRecord]:
        async with self._read() as db:
            docs = (
                await db.notifications.find({"alert_id": alert_id, "tenant_id": tenant_id})
                .sort([("created_at", 1), ("_id", 1)])
                .to_list(None)
            )
        return [_notification(doc) for doc in docs]

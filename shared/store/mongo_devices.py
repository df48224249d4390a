"""MongoDB adapter, devices and their downlink commands (a mixin of MongoStore).

The telemetry commit (mongo_ingest.py) moves a device's state fields (last
seen, battery, last fix) forward and answers the commands its frames name.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.store.audit import AuditEntry
from shared.store.devices import CommandRecord, Device, DeviceExists
from shared.store.messages import message_without_device
from shared.store.mongo_audit import with_audit
from shared.store.mongo_webhook_positions import erase_device_webhook_positions

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def _device(doc: Document) -> Device:
    # The state fields are absent until the first frame sets them (see add_device).
    return Device(
        doc["_id"],
        doc["tenant_id"],
        doc["imei"],
        doc["name"],
        doc["token_hash"],
        doc["enabled"],
        doc["created_at"],
        doc.get("last_seen"),
        doc.get("battery"),
        doc.get("last_fix_ts"),
        doc.get("last_lat_e7"),
        doc.get("last_lon_e7"),
        doc.get("protocol", "xsole"),
        doc.get("model"),
    )


def command_from_doc(doc: Document, imei: str) -> CommandRecord:
    return CommandRecord(
        doc["_id"],
        doc["device_id"],
        imei,
        doc["cmd"],
        doc["args"],
        doc["status"],
        doc["seq"],
        doc["created_at"],
        doc.get("sent_at"),
        doc.get("result_at"),
        doc.get("expires_at"),
    )


def _sendable(now: float) -> Document:
    """Pending and not expired (a command without `expires_at` never expires)."""
    return {"status": "pending", "$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]}


# What `erase` deletes, by the device's id, besides the device and its alerts' records.
_IDS_PER_QUERY = 1000  # an $in list per query: keeps each query document small
# How erasing a device (retire_device(erase=True)) treats every collection: a collection missing here
# fails tests/contract/test_erasure_contract.py, so a new one cannot be forgotten by erasure.
ERASURE = {
    "devices": "the device's document",
    **{
        name: "its documents"
        for name in ("positions", "position_keys", "heartbeats", "activities", "alarms", "commands", "device_settings")
    },
    **{name: "its documents (reports' hour totals)" for name in ("report_hours", "report_marks")},
    "alerts": "its alerts",
    **{name: "its alerts' documents" for name in ("alert_events", "notifications", "detections", "escalations")},
    "sms_reply_codes": "its alerts' documents",
    "outbox": "messages about it deleted, telemetry messages rewritten without it",
    "webhook_deliveries": "events about it deleted, positions batches rewritten without it",
    "webhook_positions_pending": "its positions",
    "geofences": "its IMEI taken out of their device lists",
    "audit": "kept: who did what, the one place that may still name the IMEI (CONTRACT §8)",
    # A known gap: an answer may name the worker (the device's name), never the IMEI.
    "sms_inbound": "kept a week: the answers sent to SMS replies, for Twilio's retries",
    **{
        name: "never about a device"
        for name in ("tenants", "users", "api_keys", "contacts", "escalation_policies", "push_subscriptions")
    },
    **{
        name: "never about a device"
        for name in ("server_keys", "webhook_endpoints", "webhook_positions_last", "tenant_settings")
    },
    # The weekly digest (docs/reports.md): who asked for it, which weeks went out.
    **{name: "never about a device" for name in ("weekly_digests",)},
    "counters": "the id sequences",
}
_ERASE_BY_DEVICE = ("positions", "position_keys", "heartbeats", "activities", "alarms", "commands")
_ERASE_BY_ALERT = ("alert_events", "notifications", "detections", "sms_reply_codes")


class MongoDevices:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        "devices": [
            IndexModel("imei", name="devices_by_imei", unique=True),
            IndexModel([("tenant_id", 1), ("_id", 1)], name="devices_by_tenant"),
        ],
        "commands": [
            IndexModel([("status", 1), ("device_id", 1)], name="commands_open"),
            IndexModel([("device_id", 1), ("seq", 1)], name="commands_by_seq"),
            IndexModel([("device_id", 1), ("_id", DESCENDING)], name="commands_by_device"),
            # Answers whose webhook event a stopped process still owes (few, looked for at open).
            IndexModel("owes_event", name="commands_owing_events", partialFilterExpression={"owes_event": True}),
        ],
    }

    if TYPE_CHECKING:  # provided by MongoStore
        _db: AsyncDatabase[Document]

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_id(self, name: str) -> int: ...
        async def _audit_doc(self, entry: AuditEntry) -> Document: ...
        async def _settle_audit(self, collection: str, doc: Document | None) -> None: ...
        async def _audited_delete(self, collection: str, query: Document, entry: AuditEntry | None) -> bool: ...

    # -- devices -------------------------------------------------------------------------

    async def add_device(
        self,
        *,
        tenant_id: int,
        imei: str,
        name: str,
        token_hash: bytes,
        protocol: str = "xsole",
        model: str | None = None,
        audit: AuditEntry | None = None,
    ) -> Device:
        async with self._write() as db:
            # No null state fields: $max treats a stored null as smaller than any
            # time, but the emulator cannot compare them; absent reads as None.
            doc = {
                "_id": await self._new_id("devices"),
                "tenant_id": tenant_id,
                "imei": imei,
                "name": name,
                "token_hash": token_hash,
                "enabled": True,
                "created_at": time.time(),
                "protocol": protocol,
                "model": model,
            }
            entry = None if audit is None else await self._audit_doc(replace(audit, target_id=imei))
            try:
                await db.devices.insert_one(with_audit(doc, entry))
            except DuplicateKeyError as exc:
                raise DeviceExists(imei) from exc
            await self._settle_audit("devices", entry)
            return _device(doc)

    async def set_device_token(self, *, imei: str, token_hash: bytes, audit: AuditEntry | None = None) -> bool:
        async with self._write() as db:
            entry = None if audit is None else await self._audit_doc(audit)
            result = await db.devices.update_one(
                {"imei": imei}, with_audit({"$set": {"token_hash": token_hash}}, entry)
            )
            await self._settle_audit("devices", entry if result.matched_count else None)
            return result.matched_count == 1

    async def update_device(
        self,
        device_id: int,
        *,
        name: str | None = None,
        enabled: bool | None = None,
        audit: AuditEntry | None = None,
    ) -> Device | None:
        change: Document = {"name": name, "enabled": enabled}
        async with self._write() as db:
            entry = None if audit is None else await self._audit_doc(audit)
            fields = {key: value for key, value in change.items() if value is not None}
            update = with_audit({"$set": fields}, entry) if fields else {"$push": {"pending_audit": entry}}
            if fields or entry is not None:
                doc = await db.devices.find_one_and_update(
                    {"_id": device_id}, update, return_document=ReturnDocument.AFTER
                )
            else:
                doc = await db.devices.find_one({"_id": device_id})
            await self._settle_audit("devices", entry if doc else None)
        return _device(doc) if doc else None

    async def retire_device(self, device_id: int, *, erase: bool = False, audit: AuditEntry | None = None) -> bool:
        # Without transactions, erasure goes first and is idempotent: a stop half way leaves the
        # device registered (and its LOGIN still checked), so the admin's repeated DELETE finishes it.
        async with self._write() as db:
            doc = await db.devices.find_one({"_id": device_id}, {"imei": 1, "tenant_id": 1})
            if doc is None:
                return False
            if erase:
                await self._erase_records(db, device_id, imei=doc["imei"], tenant_id=doc["tenant_id"])
            await db.device_settings.delete_one({"_id": device_id})
            return await self._audited_delete("devices", {"_id": device_id}, audit)

    async def _erase_records(self, db: AsyncDatabase[Document], device_id: int, *, imei: str, tenant_id: int) -> None:
        alert_ids = [doc["_id"] async for doc in db.alerts.find({"device_id": device_id}, {"_id": 1})]
        if alert_ids:
            for collection in _ERASE_BY_ALERT:
                await db[collection].delete_many({"alert_id": {"$in": alert_ids}})
            await db.escalations.delete_many({"_id": {"$in": alert_ids}})
            await db.alerts.delete_many({"_id": {"$in": alert_ids}})
        for collection in _ERASE_BY_DEVICE:  # positions: a time-series collection whose metaField is device_id
            await db[collection].delete_many({"device_id": device_id})
        for collection in ("report_hours", "report_marks"):
            await db[collection].delete_many({"d": device_id})
        await erase_device_webhook_positions(db, device_id, tenant_id=tenant_id, imei=imei)
        await db.webhook_deliveries.delete_many({"tenant_id": tenant_id, "imei": imei})  # events about it
        async for entry in db.outbox.find({}):  # not yet relayed: a handful, unless the bus is down
            kept = message_without_device(entry["topic"], entry["payload"], device_id, imei)
            if kept is None:
                await db.outbox.delete_one({"_id": entry["_id"]})
            elif kept != entry["payload"]:
                await db.outbox.update_one({"_id": entry["_id"]}, {"$set": {"payload": kept}})
        # Geofences name their devices by IMEI: after an erasure only the audit log may still name it.
        await db.geofences.update_many({"tenant_id": tenant_id, "devices": imei}, {"$pull": {"devices": imei}})

    async def device_by_imei(self, imei: str) -> Device | None:
        async with self._read() as db:
            doc = await db.devices.find_one({"imei": imei})
        return _device(doc) if doc else None

    async def device(self, device_id: int) -> Device | None:
        async with self._read() as db:
            doc = await db.devices.find_one({"_id": device_id})
        return _device(doc) if doc else None

    async def devices_by_ids(self, device_ids: Sequence[int]) -> list[Device]:
        ids = list(device_ids)
        docs: list[Document] = []
        async with self._read() as db:
            for start in range(0, len(ids), _IDS_PER_QUERY):
                docs += await db.devices.find({"_id": {"$in": ids[start : start + _IDS_PER_QUERY]}}).to_list(None)
        return [_device(doc) for doc in docs]

    async def devices(self, tenant_id: int, *, after_id: int | None = None, limit: int = 100) -> list[Device]:
        async with self._read() as db:
            docs = (
                await db.devices.find({"tenant_id": tenant_id, "_id": {"$gt": after_id or 0}})
                .sort("_id")
                .limit(limit)
                .to_list(None)
            )
        return [_device(doc) for doc in docs]

    # -- downlink commands ---------------------------------------------------------------

    async def enqueue_command(
        self,
        *,
        device_id: int,
        cmd: int,
        args: bytes = b"",
        ttl_s: float | None = None,
        audit: AuditEntry | None = None,
    ) -> int:
        async with self._write() as db:
            command_id = await self._new_id("commands")
            entry = None
            if audit is not None:
                entry = await self._audit_doc(replace(audit, detail={**audit.detail, "id": command_id}))
            now = time.time()
            doc = {
                "_id": command_id,
                "device_id": device_id,
                "cmd": cmd,
                "args": args,
                "status": "pending",
                "seq": None,
                "created_at": now,
                "expires_at": None if ttl_s is None else now + ttl_s,
            }
            await db.commands.insert_one(with_audit(doc, entry))
            await self._settle_audit("commands", entry)
            return command_id

    async def device_commands(
        self, device_id: int, *, before_id: int | None = None, limit: int = 100
    ) -> list[CommandRecord]:
        query: Document = {"device_id": device_id}
        if before_id is not None:
            query["_id"] = {"$lt": before_id}
        async with self._read() as db:
            docs = await db.commands.find(query).sort("_id", DESCENDING).limit(limit).to_list(None)
            imeis = await self._imeis([device_id] if docs else [])
        return [command_from_doc(doc, imeis[device_id]) for doc in docs if device_id in imeis]

    async def commands_to_send(
        self,
        device_ids: Sequence[int] | None = None,
        *,
        include_unanswered: bool = False,
    ) -> list[CommandRecord]:
        # A pending command past its expiry is never sent; one already sent goes again until answered.
        sendable = _sendable(time.time())
        query: Document = {"$or": [sendable, {"status": "sent"}]} if include_unanswered else sendable
        if device_ids is not None:
            query["device_id"] = {"$in": list(device_ids)}
        async with self._read() as db:
            docs = await db.commands.find(query).sort("_id").to_list(None)
            imeis = await self._imeis(doc["device_id"] for doc in docs)
        # A command of a device that no longer exists has nobody to go to (SQLite's join drops it too).
        return [command_from_doc(doc, imeis[doc["device_id"]]) for doc in docs if doc["device_id"] in imeis]

    async def mark_command_sent(self, command_id: int, seq: int) -> bool:
        async with self._write() as db:
            # Checked again here: a command that expired since it was read is not sent at all.
            now = time.time()
            result = await db.commands.update_one(
                {"_id": command_id, "$or": [_sendable(now), {"status": "sent"}]},
                {"$set": {"status": "sent", "seq": seq, "sent_at": now}},
            )
            return result.matched_count == 1

    async def command(self, command_id: int) -> CommandRecord | None:
        async with self._read() as db:
            doc = await db.commands.find_one({"_id": command_id})
            imeis = await self._imeis([doc["device_id"]] if doc else [])
        return command_from_doc(doc, imeis[doc["device_id"]]) if doc and doc["device_id"] in imeis else None

    async def _imeis(self, device_ids: Iterable[int]) -> dict[int, str]:
        wanted = list(set(device_ids))
        if not wanted:
            return {}
        docs = await self._db.devices.find({"_id": {"$in": wanted}}, {"imei": 1}).to_list(None)
        return {doc["_id"]: doc["imei"] for doc in docs}

"""MongoDB adapter, partner webhooks (a mixin of MongoStore): endpoints, deliveries and their leases.

A delivery's unique (endpoint_id, event_id) index makes queuing idempotent, and
a claim is one `find_one_and_update` per delivery, atomic on its document, so
two processes never hold the same delivery.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from shared.store.audit import AuditEntry
from shared.store.mongo_audit import with_audit
from shared.store.webhooks import AttemptOutcome, WebhookDelivery, WebhookEndpoint, WebhookEvent

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def _endpoint(doc: Document) -> WebhookEndpoint:
    return WebhookEndpoint(
        doc["_id"],
        doc["tenant_id"],
        doc["url"],
        tuple(doc["events"]),
        doc.get("description"),
        doc["enabled"],
        doc["secret"],
        doc["created_at"],
        doc.get("failing_since"),
    )


def _delivery(doc: Document) -> WebhookDelivery:
    return WebhookDelivery(
        doc["_id"],
        doc["tenant_id"],
        doc["endpoint_id"],
        doc["event_id"],
        doc["type"],
        bytes(doc["payload"]),
        doc["status"],
        doc["attempts"],
        doc.get("last_status"),
        doc.get("last_error"),
        doc.get("next_attempt_at"),
        doc.get("delivered_at"),
        doc["first_attempt_at"],
        doc["created_at"],
        doc.get("window_attempts", 0),
    )


class MongoWebhooks:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        "webhook_endpoints": [IndexModel([("tenant_id", 1), ("_id", 1)], name="webhook_endpoints_by_tenant")],
        "webhook_deliveries": [
            IndexModel([("endpoint_id", 1), ("event_id", 1)], name="webhook_deliveries_unique", unique=True),
            IndexModel([("status", 1), ("next_attempt_at", 1)], name="webhook_deliveries_due"),
            IndexModel([("tenant_id", 1), ("endpoint_id", 1), ("_id", DESCENDING)], name="webhook_deliveries_log"),
            # The device an event is about, for its erasure (absent on pings and positions batches).
            IndexModel(
                [("tenant_id", 1), ("imei", 1)],
                name="webhook_deliveries_by_device",
                partialFilterExpression={"imei": {"$exists": True}},
            ),
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

    async def add_webhook_endpoint(
        self,
        *,
        tenant_id: int,
        url: str,
        events: Sequence[str],
        description: str | None,
        secret: str,
        audit: AuditEntry | None = None,
    ) -> WebhookEndpoint:
        async with self._write() as db:
            endpoint_id = await self._new_id("webhook_endpoints")
            entry = None if audit is None else await self._audit_doc(replace(audit, target_id=str(endpoint_id)))
            doc = {
                "_id": endpoint_id,
                "tenant_id": tenant_id,
                "url": url,
                "events": list(events),
                "description": description,
                "enabled": True,
                "secret": secret,
                "created_at": time.time(),
            }
            await db.webhook_endpoints.insert_one(with_audit(doc, entry))
            await self._settle_audit("webhook_endpoints", entry)
        return _endpoint(doc)

    async def webhook_endpoints(
        self, tenant_id: int, *, after_id: int | None = None, limit: int = 100
    ) -> list[WebhookEndpoint]:
        query = {"tenant_id": tenant_id, "_id": {"$gt": after_id or 0}}
        async with self._read() as db:
            docs = await db.webhook_endpoints.find(query).sort("_id").limit(limit).to_list(None)
        return [_endpoint(doc) for doc in docs]

    async def webhook_endpoint(self, tenant_id: int, endpoint_id: int) -> WebhookEndpoint | None:
        async with self._read() as db:
            doc = await db.webhook_endpoints.find_one({"_id": endpoint_id, "tenant_id": tenant_id})
        return None if doc is None else _endpoint(doc)

    async def update_webhook_endpoint(
        self,
        tenant_id: int,
        endpoint_id: int,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        enabled: bool | None = None,
        description: str | None = None,
        audit: AuditEntry | None = None,
    ) -> WebhookEndpoint | None:
        changes: Document = {"url": url, "events": None if events is None else list(events)}
        changes |= {"enabled": enabled, "description": description}
        update: Document = {"$set": {name: value for name, value in changes.items() if value is not None}}
        if not update["$set"]:
            del update["$set"]
        async with self._write() as db:
            query = {"_id": endpoint_id, "tenant_id": tenant_id}
            before = await db.webhook_endpoints.find_one(query, {"enabled": 1})
            if before is None:
                return None
            enabled_again = bool(enabled and not before["enabled"])
            if enabled_again:  # a fresh start
                update.setdefault("$set", {})["failing_since"] = None
            entry = None if audit is None else await self._audit_doc(audit)
            if not update and entry is None:
                doc = await db.webhook_endpoints.find_one(query)
            else:
                doc = await db.webhook_endpoints.find_one_and_update(
                    query, with_audit(update, entry), return_document=ReturnDocument.AFTER
                )
            if doc is None:
                return None  # deleted meanwhile
            await self._settle_audit("webhook_endpoints", entry)
            if enabled_again:
                # What it is owed within its retry window is due now, its schedule from the first step
                # (it waited up to an hour between the attempts skipped while it was disabled). A stop
                # just before leaves them at their old times: later, never lost.
                await db.webhook_deliveries.update_many(
                    {"endpoint_id": endpoint_id, "status": "pending"},
                    {"$min": {"next_attempt_at": time.time()}, "$set": {"window_attempts": 0}},
                )
        return _endpoint(doc)

    async def delete_webhook_endpoint(
        self, tenant_id: int, endpoint_id: int, *, audit: AuditEntry | None = None
    ) -> bool:
        async with self._write() as db:
            deleted = await self._audited_delete(
                "webhook_endpoints", {"_id": endpoint_id, "tenant_id": tenant_id}, audit
            )
            if deleted:
                # After the endpoint: a stop in between leaves deliveries whose sender finds no endpoint
                # and fails them, never an endpoint without its log.
                await db.webhook_deliveries.delete_many({"endpoint_id": endpoint_id})
        return deleted

    async def subscribed_webhook_endpoints(self, tenant_id: int, event_type: str) -> list[WebhookEndpoint]:
        async with self._read() as db:
            docs = await (
                db.webhook_endpoints.find({"tenant_id": tenant_id, "enabled": True, "events": event_type})
                .sort("_id")
                .to_list(None)
            )
        return [_endpoint(doc) for doc in docs]

    async def queue_webhook_event(
        self,
        *,
        tenant_id: int,
        endpoint_ids: Sequence[int],
        event_id: str,
        type: str,
        payload: bytes,
        at: float,
        imei: str | None = None,
    ) -> int:
        new = 0
        async with self._write() as db:
            for endpoint_id in endpoint_ids:
                # An upsert on the unique key: a repeat finds the delivery and changes nothing.
                result = await db.webhook_deliveries.update_one(
                    {"endpoint_id": endpoint_id, "event_id": event_id},
                    {
                        "$setOnInsert": {
                            "_id": await self._new_id("webhook_deliveries"),
                            "tenant_id": tenant_id,
                            "type": type,
                            "payload": payload,
                            "status": "pending",
                            "attempts": 0,
                            "window_attempts": 0,
                            "next_attempt_at": at,
                            "first_attempt_at": at,
                            "created_at": at,
                            "lease_until": 0.0,
                            **({} if imei is None else {"imei": imei}),
                        }
                    },
                    upsert=True,
                )
                new += result.upserted_id is not None
        return new

    async def owe_webhook_event(self, event: WebhookEvent, *, at: float) -> int:
        endpoints = await self.subscribed_webhook_endpoints(event.tenant_id, event.type)
        if not endpoints:
            return 0
        return await self.queue_webhook_event(
            tenant_id=event.tenant_id,
            endpoint_ids=[endpoint.id for endpoint in endpoints],
            event_id=event.id,
            type=event.type,
            payload=event.body,
            at=at,
            imei=event.imei,
        )

    async def webhook_deliveries(
        self, tenant_id: int, endpoint_id: int, *, before_id: int | None = None, limit: int = 100
    ) -> list[WebhookDelivery]:
        query: Document = {"tenant_id": tenant_id, "endpoint_id": endpoint_id}
        if before_id is not None:
            query["_id"] = {"$lt": before_id}
        async with self._read() as db:
            docs = await db.webhook_deliveries.find(query).sort("_id", DESCENDING).limit(limit).to_list(None)
        return [_delivery(doc) for doc in docs]

    async def claim_webhook_deliveries(
        self,
        *,
        owner: str,
        now: float,
        lease_s: float,
        limit: int,
        per_endpoint: int | None = None,
        in_flight: Mapping[int, int] | None = None,
    ) -> list[WebhookDelivery]:
        busy = dict(in_flight or {})
        claimed: list[WebhookDelivery] = []
        due: Document = {"status": "pending", "next_attempt_at": {"$lte": now}, "lease_until": {"$lt": now}}
        async with self._read() as db:  # most polls find nothing: no write, no outbox wake-up
            if await db.webhook_deliveries.find_one(due, {"_id": 1}) is None:
                return claimed
        async with self._write() as db:
            while len(claimed) < limit:
                query: Document = {"status": "pending", "next_attempt_at": {"$lte": now}, "lease_until": {"$lt": now}}
                if per_endpoint is not None:
                    full = [endpoint_id for endpoint_id, count in busy.items() if count >= per_endpoint]
                    if full:
                        query["endpoint_id"] = {"$nin": full}
                doc = await db.webhook_deliveries.find_one_and_update(
                    query,
                    {"$set": {"lease_owner": owner, "lease_until": now + lease_s}},
                    sort=[("next_attempt_at", ASCENDING), ("_id", ASCENDING)],
                    return_document=ReturnDocument.AFTER,
                )
                if doc is None:
                    break
                claimed.append(_delivery(doc))
                busy[doc["endpoint_id"]] = busy.get(doc["endpoint_id"], 0) + 1
        return claimed

    async def finish_webhook_attempts(
        self, attempts: Sequence[tuple[int, AttemptOutcome]], *, owner: str
    ) -> list[bool]:
        # One update per attempt, each conditional on the lease as the single one is (no transaction).
        return [await self.finish_webhook_attempt(id_, owner=owner, outcome=outcome) for id_, outcome in attempts]

    async def finish_webhook_attempt(self, delivery_id: int, *, owner: str, outcome: AttemptOutcome) -> bool:
        update: Document = {
            "$set": {
                "status": outcome.status,
                "last_status": outcome.last_status,
                "last_error": outcome.last_error,
                "next_attempt_at": outcome.next_attempt_at,
                "lease_owner": None,
                "lease_until": 0.0,
            },
            "$inc": {"attempts": 1, "window_attempts": 1},
        }
        if outcome.delivered_at is not None:
            update["$set"]["delivered_at"] = outcome.delivered_at
        async with self._write() as db:
            doc = await db.webhook_deliveries.find_one_and_update(
                {"_id": delivery_id, "lease_owner": owner}, update, projection={"endpoint_id": 1}
            )
            if doc is None:
                return False
            if outcome.sent_at is not None:
                # The endpoint's health, after the attempt it follows from: a stop in between loses only
                # this one mark, which the next attempt sets again. A failure marks only a healthy endpoint.
                delivered = outcome.status == "delivered"
                await db.webhook_endpoints.update_one(
                    {"_id": doc["endpoint_id"]} | ({} if delivered else {"failing_since": None}),
                    {"$set": {"failing_since": None if delivered else outcome.sent_at}},
                )
        return True

    async def retry_webhook_delivery(self, tenant_id: int, endpoint_id: int, event_id: str, *, now: float) -> bool:
        async with self._write() as db:
            result = await db.webhook_deliveries.update_one(
                {"tenant_id": tenant_id, "endpoint_id": endpoint_id, "event_id": event_id},
                {
                    "$set": {
                        "status": "pending",
                        "next_attempt_at": now,
                        "first_attempt_at": now,
                        "window_attempts": 0,
                        "lease_owner": None,
                        "lease_until": 0.0,
                    }
                },
            )
        return result.matched_count == 1

    async def disable_failing_webhook_endpoint(
        self, tenant_id: int, endpoint_id: int, *, failing_since_by: float, audit: AuditEntry | None = None
    ) -> WebhookEndpoint | None:
        query: Document = {
            "_id": endpoint_id,
            "tenant_id": tenant_id,
            "enabled": True,
            "failing_since": {"$ne": None, "$lte": failing_since_by},
        }
        async with self._write() as db:
            if await db.webhook_endpoints.find_one(query, {"_id": 1}) is None:
                return None  # most calls: nothing to disable, and no audit id taken
            entry = None if audit is None else await self._audit_doc(audit)
            # One atomic write on the document, conditional on it still being enabled and failing:
            # of several senders, one gets the document back; its entry travels in that same write.
            doc = await db.webhook_endpoints.find_one_and_update(
                query, with_audit({"$set": {"enabled": False}}, entry), return_document=ReturnDocument.AFTER
            )
            if doc is None:
                return None
            await self._settle_audit("webhook_endpoints", entry)
        return _endpoint(doc)

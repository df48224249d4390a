"""MongoDB adapter, the `positions` webhook event (a mixin of MongoStore): pending positions and
their batching into deliveries (see webhook_positions.py).

Without transactions, a batch is made in steps that are each safe to repeat: the rows it takes
are first tagged with its event id (derived from the first and last row taken), then the delivery
is inserted under that id (an upsert on the deliveries' unique key), then the rows are marked
batched. A pass that stops anywhere in between leaves tagged rows, which the next pass finishes
first, with the same rows and the same event id.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import ASCENDING, IndexModel

from shared.store.webhook_positions import (
    MARKER_KEEP_S,
    MAX_BATCH_ITEMS,
    POSITIONS_EVENT,
    PositionItem,
    batch_event_id,
    parts,
    positions_body,
    without_device,
)

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


async def erase_device_webhook_positions(
    db: AsyncDatabase[Document], device_id: int, *, tenant_id: int, imei: str
) -> None:
    """Drop a device's positions from the rows not yet batched and from the positions deliveries
    made of them, sent or not (part of its erasure: only the audit log may name it)."""
    # The bodies are bytes the server cannot search: each of the tenant's positions bodies is read.
    async for doc in db.webhook_deliveries.find({"tenant_id": tenant_id, "type": POSITIONS_EVENT}, {"payload": 1}):
        if imei.encode() in bytes(doc["payload"]):
            payload = without_device(bytes(doc["payload"]), imei)
            await db.webhook_deliveries.update_one({"_id": doc["_id"]}, {"$set": {"payload": payload}})
    pending = db.webhook_positions_pending
    async for row in pending.find({"device_ids": device_id, "batched_at": None}):
        kept = [entry for entry in row["items"] if entry["device_id"] != device_id]
        if not kept:  # nothing left to send: no empty batch either
            await pending.delete_one({"_id": row["_id"]})
            continue
        devices = sorted({entry["device_id"] for entry in kept})
        await pending.update_one(
            {"_id": row["_id"]}, {"$set": {"items": kept, "device_ids": devices, "item_count": len(kept)}}
        )


class MongoWebhookPositions:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        "webhook_positions_pending": [
            IndexModel(
                [("endpoint_id", 1), ("message_id", 1), ("part", 1)], name="webhook_positions_unique", unique=True
            ),
            # Serves the walk over the endpoints with positions waiting, and each one's rows in order.
            IndexModel([("event_id", 1), ("endpoint_id", 1), ("_id", 1)], name="webhook_positions_waiting"),
            IndexModel([("batched_at", 1)], name="webhook_positions_markers"),
            IndexModel([("device_ids", 1)], name="webhook_positions_by_device"),
        ],
    }

    if TYPE_CHECKING:  # provided by MongoStore

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_id(self, name: str) -> int: ...

    async def positions_subscribers(self) -> dict[int, list[int]]:
        async with self._read() as db:
            docs = await (
                db.webhook_endpoints.find({"enabled": True, "events": POSITIONS_EVENT}, {"tenant_id": 1})
                .sort("_id")
                .to_list(None)
            )
        subscribers: dict[int, list[int]] = {}
        for doc in docs:
            subscribers.setdefault(doc["tenant_id"], []).append(doc["_id"])
        return subscribers

    async def add_pending_positions(
        self,
        *,
        tenant_id: int,
        endpoint_ids: Sequence[int],
        message_id: str,
        items: Sequence[PositionItem],
        at: float,
    ) -> int:
        new = 0
        async with self._write() as db:
            # Only the tenant's endpoints still there (the subscribers were cached); one deleted after
            # this look leaves rows the batcher drops.
            known = await db.webhook_endpoints.find(
                {"_id": {"$in": list(endpoint_ids)}, "tenant_id": tenant_id}, {"_id": 1}
            ).to_list(None)
            for endpoint_id in sorted(doc["_id"] for doc in known):
                for n, part in enumerate(parts(items)):
                    # An upsert on the unique key: a message heard again finds its row and changes nothing.
                    result = await db.webhook_positions_pending.update_one(
                        {"endpoint_id": endpoint_id, "message_id": message_id, "part": n},
                        {
                            "$setOnInsert": {
                                "_id": await self._new_id("webhook_positions_pending"),
                                "tenant_id": tenant_id,
                                "items": [{"device_id": device_id, "item": item} for device_id, item in part],
                                "device_ids": sorted({device_id for device_id, _ in part}),
                                "item_count": len(part),
                                "created_at": at,
                                "event_id": None,
                                "batched_at": None,
                            }
                        },
                        upsert=True,
                    )
                    new += n == 0 and result.upserted_id is not None
        return new

    async def pending_positions(self, endpoint_id: int) -> list[dict[str, Any]]:
        async with self._read() as db:
            docs = await (
                db.webhook_positions_pending.find({"endpoint_id": endpoint_id, "event_id": None})
                .sort("_id")
                .to_list(None)
            )
        return [entry["item"] for doc in docs for entry in doc["items"]]

    async def batch_pending_positions(
        self, *, now: float, max_items: int = MAX_BATCH_ITEMS, min_gap_s: float = 1.0
    ) -> int:
        # Looked for with reads first: this runs several times a second in every notifications process,
        # and while a receiver is down its endpoint has positions waiting but no batch due.
        async with self._read() as db:
            unfinished = await db.webhook_positions_pending.find_one(
                {"event_id": {"$ne": None}, "batched_at": None}, {"_id": 1}
            )
            due = await self._due(db, now, min_gap_s)
            gone = await self._gone(db)
        if unfinished is None and not due and not gone:
            return 0
        made = 0
        async with self._write() as db:
            pending = db.webhook_positions_pending
            await pending.delete_many({"event_id": {"$ne": None}, "batched_at": {"$lt": now - MARKER_KEEP_S}})
            # First what a stopped pass tagged and did not finish: the same rows under the same id.
            for doc in await pending.find({"event_id": {"$ne": None}, "batched_at": None}).to_list(None):
                made += await self._finish_batch(db, doc["endpoint_id"], doc["tenant_id"], doc["event_id"], now)
            for endpoint_id, tenant_id in await self._due(db, now, min_gap_s):  # again: another may have batched
                rows = await (
                    pending.find({"endpoint_id": endpoint_id, "event_id": None}, {"item_count": 1})
                    .sort("_id", ASCENDING)
                    .limit(max_items)  # each row holds one item at least
                    .to_list(None)
                )
                taken: list[int] = []
                count = 0
                for row in rows:
                    if taken and count + row["item_count"] > max_items:
                        break
                    taken.append(row["_id"])
                    count += row["item_count"]
                if not taken:
                    continue
                event_id = batch_event_id(endpoint_id, taken[0], taken[-1])
                await pending.update_many({"_id": {"$in": taken}, "event_id": None}, {"$set": {"event_id": event_id}})
                made += await self._finish_batch(db, endpoint_id, tenant_id, event_id, now)
            # Rows of endpoints deleted since: nobody is owed them.
            gone = await self._gone(db)
            if gone:
                await pending.delete_many({"endpoint_id": {"$in": gone}})
        return made

    async def _gone(self, db: AsyncDatabase[Document]) -> list[int]:
        """Endpoints with positions waiting that were deleted since (deleting one leaves its rows)."""
        waiting = await self._waiting_endpoints(db)
        known = await db.webhook_endpoints.find({"_id": {"$in": waiting}}, {"_id": 1}).to_list(None)
        return sorted(set(waiting) - {doc["_id"] for doc in known})

    async def _waiting_endpoints(self, db: AsyncDatabase[Document]) -> list[int]:
        """The endpoints with positions waiting: one indexed look per endpoint, however many rows wait."""
        found: list[int] = []
        while True:
            query: Document = {"event_id": None, "endpoint_id": {"$gt": found[-1] if found else -1}}
            doc = await db.webhook_positions_pending.find_one(
                query, {"endpoint_id": 1}, sort=[("endpoint_id", ASCENDING)]
            )
            if doc is None:
                return found
            found.append(doc["endpoint_id"])

    async def _due(self, db: AsyncDatabase[Document], now: float, min_gap_s: float) -> list[tuple[int, int]]:
        """The endpoints with positions waiting whose previous batch is out of the way."""
        waiting = await self._waiting_endpoints(db)
        if not waiting:
            return []
        query = {"_id": {"$in": waiting}}
        endpoints = await db.webhook_endpoints.find(query, {"tenant_id": 1}).sort("_id").to_list(None)
        return [
            (endpoint["_id"], endpoint["tenant_id"])
            for endpoint in endpoints
            if not await self._previous_still_owed(db, endpoint["_id"], now, min_gap_s)
        ]

    async def _previous_still_owed(
        self, db: AsyncDatabase[Document], endpoint_id: int, now: float, min_gap_s: float
    ) -> bool:
        last = await db.webhook_positions_last.find_one({"_id": endpoint_id})
        if last is None:
            return False
        delivery = await db.webhook_deliveries.find_one(
            {"endpoint_id": endpoint_id, "event_id": last["event_id"]}, {"status": 1, "delivered_at": 1}
        )
        if delivery is None:  # its delivery is gone
            return False
        delivered_at = delivery.get("delivered_at")
        return bool(delivery["status"] == "pending" or (delivered_at is not None and now - delivered_at < min_gap_s))

    async def _finish_batch(
        self, db: AsyncDatabase[Document], endpoint_id: int, tenant_id: int, event_id: str, now: float
    ) -> int:
        """Insert the delivery of the rows tagged `event_id` (once), then mark them batched."""
        rows = await db.webhook_positions_pending.find({"event_id": event_id}).sort("_id").to_list(None)
        if not rows:
            return 0
        items = [entry["item"] for row in rows for entry in row["items"]]
        result = await db.webhook_deliveries.update_one(
            {"endpoint_id": endpoint_id, "event_id": event_id},
            {
                "$setOnInsert": {
                    "_id": await self._new_id("webhook_deliveries"),
                    "tenant_id": tenant_id,
                    "type": POSITIONS_EVENT,
                    "payload": positions_body(event_id, now, items),
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "first_attempt_at": now,
                    "created_at": now,
                    "lease_until": 0.0,
                }
            },
            upsert=True,
        )
        await db.webhook_positions_last.update_one({"_id": endpoint_id}, {"$set": {"event_id": event_id}}, upsert=True)
        await db.webhook_positions_pending.update_many(
            {"event_id": event_id}, {"$set": {"batched_at": now, "items": [], "device_ids": []}}
        )
        return int(result.upserted_id is not None)

"""MongoDB adapter, the outbox (a mixin of MongoStore): messages queued for the relay.

Ids are taken and inserted under one lock, so within a process an entry never
becomes visible after one with a higher id, and a relay's cursor
(`outbox_pending(after_id=...)`) never passes one still being written
(docs/storage.md says what that does not cover across processes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import IndexModel

from shared.store.outbox import OutboxEntry

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]
OutboxWrite = tuple[str, bytes, str | None]  # topic, payload, and the key that makes writing it idempotent


class MongoOutbox:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        # Keyed entries (an alarm's, an alert change's) are written at most once while queued.
        "outbox": [
            IndexModel("key", name="outbox_by_key", unique=True, partialFilterExpression={"key": {"$exists": True}})
        ],
    }

    if TYPE_CHECKING:  # provided by MongoStore
        _outbox_lock: asyncio.Lock

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_ids(self, name: str, count: int = 1) -> range: ...
        async def _insert_new(self, collection: str, docs: list[Document]) -> None: ...

    async def outbox_pending(self, limit: int, *, after_id: int = 0) -> list[OutboxEntry]:
        async with self._read() as db:
            docs = await db.outbox.find({"_id": {"$gt": after_id}}).sort("_id").limit(limit).to_list(None)
        return [OutboxEntry(doc["_id"], doc["topic"], doc["payload"]) for doc in docs]

    async def outbox_remove(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self._write() as db:
            await db.outbox.delete_many({"_id": {"$in": list(ids)}})

    async def _append_outbox(self, entries: Sequence[OutboxWrite]) -> None:
        """Queue messages for the relay (within a write of the caller's). A keyed entry already
        queued is not queued twice."""
        if not entries:
            return
        now = time.time()
        async with self._outbox_lock:
            ids = await self._new_ids("outbox", len(entries))
            docs: list[Document] = []
            for outbox_id, (topic, payload, key) in zip(ids, entries, strict=True):
                doc = {"_id": outbox_id, "topic": topic, "payload": payload, "created_at": now}
                if key is not None:
                    doc["key"] = key
                docs.append(doc)
            await self._insert_new("outbox", docs)

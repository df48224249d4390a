"""MongoDB adapter, Web Push half (a mixin of MongoStore): subscriptions and the kept VAPID key.

The endpoint's unique index makes a re-subscription one upsert; the VAPID key
is one document inserted only when absent, so racing processes keep the first.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.store.push import PushSubscription

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def _subscription(doc: Document) -> PushSubscription:
    return PushSubscription(
        doc["_id"], doc["tenant_id"], doc["user_id"], doc["endpoint"], doc["p256dh"], doc["auth"], doc["created_at"]
    )


class MongoPush:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        "push_subscriptions": [
            IndexModel("endpoint", name="push_subscriptions_endpoint", unique=True),
            IndexModel([("tenant_id", 1), ("_id", 1)], name="push_subscriptions_by_tenant"),
        ],
    }

    if TYPE_CHECKING:  # provided by MongoStore

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_id(self, name: str) -> int: ...

    async def add_push_subscription(
        self, *, tenant_id: int, user_id: int, endpoint: str, p256dh: str, auth: str
    ) -> PushSubscription:
        async with self._write() as db:
            # An id is taken even when the endpoint exists already (then unused): ids only need to be unique.
            doc = await db.push_subscriptions.find_one_and_update(
                {"endpoint": endpoint},
                {
                    "$set": {"tenant_id": tenant_id, "user_id": user_id, "p256dh": p256dh, "auth": auth},
                    "$setOnInsert": {"_id": await self._new_id("push_subscriptions"), "created_at": time.time()},
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        assert doc is not None  # an upsert returning the document after always has one
        return _subscription(doc)

    async def push_subscriptions(self, tenant_id: int) -> list[PushSubscription]:
        async with self._read() as db:
            docs = await db.push_subscriptions.find({"tenant_id": tenant_id}).sort("_id").to_list(None)
        return [_subscription(doc) for doc in docs]

    async def delete_push_subscription(
        self, tenant_id: int, subscription_id: int, *, user_id: int | None = None
    ) -> bool:
        query: Document = {"_id": subscription_id, "tenant_id": tenant_id}
        if user_id is not None:
            query["user_id"] = user_id
        async with self._write() as db:
            return (await db.push_subscriptions.delete_one(query)).deleted_count == 1

    async def keep_vapid_private_key(self, candidate: str) -> str:
        async with self._write() as db:
            try:
                await db.server_keys.insert_one({"_id": "vapid", "value": candidate, "created_at": time.time()})
            except DuplicateKeyError:
                pass  # kept already, by us earlier or by another process now
            doc = await db.server_keys.find_one({"_id": "vapid"})
        assert doc is not None
        return str(doc["value"])

"""MongoDB adapter, the weekly digest's claims (a mixin of MongoStore; shared/store/digest.py).

A claim is a document whose `_id` is the tenant and the week, so the insert
that claims it is unique by construction; taking over a stale claim is a
compare-and-set on the claim time read.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from pymongo.errors import DuplicateKeyError

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def _claim_id(tenant_id: int, week: str) -> str:
    return f"{tenant_id}:{week}"


class MongoDigest:
    if TYPE_CHECKING:  # provided by MongoStore

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...

    async def claim_weekly_digest(self, tenant_id: int, week: str, *, stale_before: float) -> bool:
        now = time.time()
        async with self._write() as db:
            try:
                await db.weekly_digests.insert_one(
                    {
                        "_id": _claim_id(tenant_id, week),
                        "tenant_id": tenant_id,
                        "week": week,
                        "status": "claimed",
                        "claimed_at": now,
                    }
                )
                return True
            except DuplicateKeyError:
                result = await db.weekly_digests.update_one(
                    {"_id": _claim_id(tenant_id, week), "status": "claimed", "claimed_at": {"$lt": stale_before}},
                    {"$set": {"claimed_at": now}},
                )
                return result.modified_count == 1

    async def finish_weekly_digest(self, tenant_id: int, week: str, *, recipients: int) -> None:
        async with self._write() as db:
            await db.weekly_digests.update_one(
                {"_id": _claim_id(tenant_id, week)},
                {"$set": {"status": "sent", "sent_at": time.time(), "recipients": recipients}},
            )

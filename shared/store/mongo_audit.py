"""MongoDB adapter, the audit log (a mixin of MongoStore).

Without multi-document transactions, a change and its audit entry are kept
together the way alert changes keep their announcements (mongo_alerts.py):

- **an insert or an update** carries the entry in the changed document's
  `pending_audit` list (`with_audit`), in the same single-document write,
  which is atomic.
  The entry is then copied into `audit` (keyed by its id: a repeat is skipped)
  and pulled from the document.
- **a delete** first appends the entry to `audit` marked `pending_delete`
  (hidden from readers), then deletes, then unmarks. A stop in between is
  rolled forward: the delete was asked for and recorded, so it is carried out.

`_finish_audit` (at open) settles what a stopped process left half done, in
the collections named in AUDITED_COLLECTIONS. Ids come from the `audit`
counter when the change is made, so the log's order is the order of changes.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import DESCENDING, IndexModel

from shared.store.audit import Actor, AuditEntry, AuditRecord

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def _record(doc: Document) -> AuditRecord:
    actor, target = doc["actor"], doc["target"]
    entry = AuditEntry(
        doc["tenant_id"],
        Actor(actor["type"], actor["id"], actor["label"]),
        doc["action"],
        target["type"],
        target["id"],
        doc["detail"],
    )
    return AuditRecord(doc["_id"], doc["at"], entry)


def with_audit(update: Document, doc: Document | None) -> Document:
    """An update (operators) or a new document that also carries the audit entry `doc`."""
    if doc is None:
        return update
    if not any(key.startswith("$") for key in update):  # a whole new document
        return {**update, "pending_audit": [doc]}
    return {**update, "$push": {**update.get("$push", {}), "pending_audit": doc}}


class MongoAudit:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        "audit": [
            IndexModel([("tenant_id", 1), ("_id", DESCENDING)], name="audit_by_tenant"),
            IndexModel([("tenant_id", 1), ("action", 1), ("_id", DESCENDING)], name="audit_by_action"),
        ],
    }
    # The collections whose documents may carry a `pending_audit` entry (settled at open).
    AUDITED_COLLECTIONS: ClassVar[tuple[str, ...]] = (
        "tenants",
        "users",
        "api_keys",
        "devices",
        "commands",
        "contacts",
        "alerts",
        "escalation_policies",
        "geofences",
        "device_settings",
        "webhook_endpoints",
        "tenant_settings",
    )

    if TYPE_CHECKING:  # provided by MongoStore
        _db: AsyncDatabase[Document]

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_id(self, name: str) -> int: ...
        async def _insert_new(self, collection: str, docs: list[Document]) -> None: ...

    async def record_audit(self, entry: AuditEntry) -> AuditRecord:
        async with self._write() as db:
            doc = await self._audit_doc(entry)
            await db.audit.insert_one(doc)
        return _record(doc)

    async def audit_log(
        self,
        tenant_id: int,
        *,
        since: float | None = None,
        until: float | None = None,
        action: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        query: Document = {"tenant_id": tenant_id, "pending_delete": {"$exists": False}}
        at: Document = {}
        if since is not None:
            at["$gte"] = since
        if until is not None:
            at["$lt"] = until
        if at:
            query["at"] = at
        if action is not None:
            query["action"] = action
        if before_id is not None:
            query["_id"] = {"$lt": before_id}
        async with self._read() as db:
            docs = await db.audit.find(query).sort("_id", DESCENDING).limit(limit).to_list(None)
        return [_record(doc) for doc in docs]

    # -- for the other mixins' writes ------------------------------------------------

    async def _audit_doc(self, entry: AuditEntry) -> Document:
        """The entry as stored, with its id and time taken now (call it just before the change)."""
        actor = entry.actor
        return {
            "_id": await self._new_id("audit"),
            "at": time.time(),
            "tenant_id": entry.tenant_id,
            "actor": {"type": actor.type, "id": actor.id, "label": actor.label},
            "action": entry.action,
            "target": {"type": entry.target_type, "id": entry.target_id},
            "detail": entry.detail,
        }

    async def _settle_audit(self, collection: str, doc: Document | None) -> None:
        """Copy an entry a document carries (`with_audit` put it there) into the log, then pull it
        from the document; nothing for None."""
        if doc is None:
            return
        await self._insert_new("audit", [doc])
        await self._db[collection].update_one(
            {"pending_audit._id": doc["_id"]}, {"$pull": {"pending_audit": {"_id": doc["_id"]}}}
        )

    async def _audited_delete(self, collection: str, query: Document, entry: AuditEntry | None) -> bool:
        """Delete one document matching `query`, recording the entry with it; False when none matched."""
        if entry is None:
            return (await self._db[collection].delete_one(query)).deleted_count == 1
        if await self._db[collection].find_one(query, {"_id": 1}) is None:
            return False
        doc = await self._audit_doc(entry)
        doc["pending_delete"] = {"collection": collection, "query": query}
        await self._db.audit.insert_one(doc)
        deleted = (await self._db[collection].delete_one(query)).deleted_count == 1
        if deleted:
            await self._db.audit.update_one({"_id": doc["_id"]}, {"$unset": {"pending_delete": ""}})
        else:  # someone else deleted it between the two calls: theirs is the entry that stands
            await self._db.audit.delete_one({"_id": doc["_id"], "pending_delete": {"$exists": True}})
        return deleted

    async def _finish_audit(self) -> None:
        """Settle the entries a stopped process left half written (at open)."""
        for collection in self.AUDITED_COLLECTIONS:
            async for doc in self._db[collection].find({"pending_audit.0": {"$exists": True}}, {"pending_audit": 1}):
                for entry in doc["pending_audit"]:
                    await self._settle_audit(collection, entry)
        async for doc in self._db.audit.find({"pending_delete": {"$exists": True}}):
            target = doc["pending_delete"]
            await self._db[target["collection"]].delete_one(target["query"])
            await self._db.audit.update_one({"_id": doc["_id"]}, {"$unset": {"pending_delete": ""}})

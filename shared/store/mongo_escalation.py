"""MongoDB adapter, escalation half (a mixin of MongoStore): policies and the plan of each open alert.

Each write is one document, so atomic on its own; claiming a step is a
conditional update on (alert, step), which exactly one process wins.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import IndexModel

from shared.store.audit import AuditEntry, AuditRecord
from shared.store.escalation import EscalationPolicy, EscalationStep, ScheduledEscalation
from shared.store.mongo_audit import with_audit

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def _policy(doc: Document | None) -> EscalationPolicy | None:
    if doc is None:
        return None
    steps = tuple(EscalationStep.decoded(s) for s in doc["steps"])
    return EscalationPolicy(doc["_id"], steps, doc["updated_at"])


class MongoEscalation:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        "escalations": [IndexModel("due_at", name="escalations_due")],
    }

    if TYPE_CHECKING:  # provided by MongoStore

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _audit_doc(self, entry: AuditEntry) -> Document: ...
        async def _settle_audit(self, collection: str, doc: Document | None) -> None: ...
        async def _audited_delete(self, collection: str, query: Document, entry: AuditEntry | None) -> bool: ...
        async def record_audit(self, entry: AuditEntry) -> AuditRecord: ...

    async def escalation_policy(self, tenant_id: int) -> EscalationPolicy | None:
        async with self._read() as db:
            return _policy(await db.escalation_policies.find_one({"_id": tenant_id}))

    async def set_escalation_policy(
        self, tenant_id: int, steps: Sequence[EscalationStep], *, audit: AuditEntry | None = None
    ) -> EscalationPolicy:
        now = time.time()
        async with self._write() as db:
            if steps:
                # An update, not a replace: a replace would drop an entry a stopped write left pending.
                entry = None if audit is None else await self._audit_doc(audit)
                encoded = [s.encoded() for s in steps]
                await db.escalation_policies.update_one(
                    {"_id": tenant_id}, with_audit({"$set": {"steps": encoded, "updated_at": now}}, entry), upsert=True
                )
                await self._settle_audit("escalation_policies", entry)
            elif not await self._audited_delete("escalation_policies", {"_id": tenant_id}, audit) and audit:
                await self.record_audit(audit)  # no policy to delete: the entry alone says it was cleared
        return EscalationPolicy(tenant_id, tuple(steps), now)

    async def schedule_escalation(self, *, alert_id: int, tenant_id: int, step: int, due_at: float) -> None:
        async with self._write() as db:
            # $setOnInsert: an existing plan (a redelivered alert) stays as it is.
            await db.escalations.update_one(
                {"_id": alert_id},
                {"$setOnInsert": {"tenant_id": tenant_id, "step": step, "due_at": due_at}},
                upsert=True,
            )

    async def due_escalations(self, now: float, *, limit: int = 100) -> list[ScheduledEscalation]:
        async with self._read() as db:
            cursor = db.escalations.find({"due_at": {"$lte": now}}).sort("due_at", 1).limit(limit)
            return [ScheduledEscalation(d["_id"], d["tenant_id"], d["step"], d["due_at"]) async for d in cursor]

    async def claim_escalation(self, scheduled: ScheduledEscalation, *, next_due_at: float | None) -> bool:
        match = {"_id": scheduled.alert_id, "step": scheduled.step}
        async with self._write() as db:
            if next_due_at is None:
                return (await db.escalations.delete_one(match)).deleted_count == 1
            result = await db.escalations.update_one(match, {"$inc": {"step": 1}, "$set": {"due_at": next_due_at}})
            return result.modified_count == 1

    async def cancel_escalation(self, alert_id: int) -> None:
        async with self._write() as db:
            await db.escalations.delete_one({"_id": alert_id})

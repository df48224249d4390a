"""MongoDB adapter, geofence half (a mixin of MongoStore): one document per geofence."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import IndexModel

from shared.store.audit import AuditEntry
from shared.store.geofences import Geofence
from shared.store.mongo_audit import with_audit

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def _geofence(doc: Document) -> Geofence:
    return Geofence(
        doc["_id"],
        doc["tenant_id"],
        doc["name"],
        doc["shape"],
        tuple(doc["devices"]),
        tuple(doc["alert_on"]),
        doc["created_at"],
    )


class MongoGeofences:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        "geofences": [IndexModel([("tenant_id", 1), ("_id", 1)], name="geofences_by_tenant")],
    }

    if TYPE_CHECKING:  # provided by MongoStore

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_id(self, name: str) -> int: ...
        async def _audit_doc(self, entry: AuditEntry) -> Document: ...
        async def _settle_audit(self, collection: str, doc: Document | None) -> None: ...
        async def _audited_delete(self, collection: str, query: Document, entry: AuditEntry | None) -> bool: ...

    async def add_geofence(
        self,
        *,
        tenant_id: int,
        name: str,
        shape: dict[str, Any],
        devices: tuple[str, ...],
        alert_on: tuple[str, ...],
        audit: AuditEntry | None = None,
    ) -> Geofence:
        async with self._write() as db:
            geofence = Geofence(
                await self._new_id("geofences"), tenant_id, name, shape, tuple(devices), tuple(alert_on), time.time()
            )
            entry = None if audit is None else await self._audit_doc(replace(audit, target_id=str(geofence.id)))
            await db.geofences.insert_one(
                with_audit(
                    {
                        "_id": geofence.id,
                        "tenant_id": tenant_id,
                        "name": name,
                        "shape": shape,
                        "devices": list(devices),
                        "alert_on": list(alert_on),
                        "created_at": geofence.created_at,
                    },
                    entry,
                )
            )
            await self._settle_audit("geofences", entry)
            return geofence

    async def geofences(self, tenant_id: int) -> list[Geofence]:
        async with self._read() as db:
            docs = await db.geofences.find({"tenant_id": tenant_id}).sort("_id").to_list(None)
        return [_geofence(doc) for doc in docs]

    async def geofence(self, tenant_id: int, geofence_id: int) -> Geofence | None:
        async with self._read() as db:
            doc = await db.geofences.find_one({"_id": geofence_id, "tenant_id": tenant_id})
        return _geofence(doc) if doc else None

    async def delete_geofence(self, tenant_id: int, geofence_id: int, *, audit: AuditEntry | None = None) -> bool:
        async with self._write():
            return await self._audited_delete("geofences", {"_id": geofence_id, "tenant_id": tenant_id}, audit)

"""MongoDB adapter, geofence half (a mixin of MongoStore): one document per geofence."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import IndexModel

from shared.store.geofences import Geofence

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

    async def add_geofence(
        self, *, tenant_id: int, name: str, shape: dict[str, Any], devices: tuple[str, ...], alert_on: tuple[str, ...]
    ) -> Geofence:
        async with self._write() as db:
            geofence = Geofence(
                await self._new_id("geofences"), tenant_id, name, shape, tuple(devices), tuple(alert_on), time.time()
            )
            await db.geofences.insert_one(
                {
                    "_id": geofence.id,
                    "tenant_id": tenant_id,
                    "name": name,
                    "shape": shape,
                    "devices": list(devices),
                    "alert_on": list(alert_on),
                    "created_at": geofence.created_at,
                }
            )
            return geofence

    async def geofences(self, tenant_id: int) -> list[Geofence]:
        async with self._read() as db:
            docs = await db.geofences.find({"tenant_id": tenant_id}).sort("_id").to_list(None)
        return [_geofence(doc) for doc in docs]

    async def geofence(self, tenant_id: int, geofence_id: int) -> Geofence | None:
        async with self._read() as db:
            doc = await db.geofences.find_one({"_id": geofence_id, "tenant_id": tenant_id})
        return _geofence(doc) if doc else None

    async def delete_geofence(self, tenant_id: int, geofence_id: int) -> bool:
        async with self._write() as db:
            result = await db.geofences.delete_one({"_id": geofence_id, "tenant_id": tenant_id})
            return result.deleted_count == 1

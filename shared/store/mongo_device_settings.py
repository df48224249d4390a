"""MongoDB adapter, per-device detection settings (a mixin of MongoStore)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from shared.store.audit import AuditEntry
from shared.store.device_settings import DeviceSettings
from shared.store.mongo_audit import with_audit

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


class MongoDeviceSettings:
    if TYPE_CHECKING:  # provided by MongoStore

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _audit_doc(self, entry: AuditEntry) -> Document: ...
        async def _settle_audit(self, collection: str, doc: Document | None) -> None: ...

    async def device_settings(self, device_id: int) -> DeviceSettings:
        async with self._read() as db:
            doc = await db.device_settings.find_one({"_id": device_id})
        return DeviceSettings(offline_after=doc["offline_after"], shift=doc["shift"]) if doc else DeviceSettings()

    async def set_device_settings(
        self, device_id: int, settings: DeviceSettings, *, audit: AuditEntry | None = None
    ) -> None:
        async with self._write() as db:
            # An update, not a replace: a replace would drop an entry a stopped write left pending.
            entry = None if audit is None else await self._audit_doc(audit)
            await db.device_settings.update_one(
                {"_id": device_id}, with_audit({"$set": settings.as_dict()}, entry), upsert=True
            )
            await self._settle_audit("device_settings", entry)

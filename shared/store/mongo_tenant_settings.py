"""MongoDB adapter, tenant settings (a mixin of MongoStore): one document per tenant, `_id` its id."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from shared.store.audit import AuditEntry
from shared.store.mongo_audit import with_audit
from shared.store.tenant_settings import TenantSettings

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


class MongoTenantSettings:
    if TYPE_CHECKING:  # provided by MongoStore

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _audit_doc(self, entry: AuditEntry) -> Document: ...
        async def _settle_audit(self, collection: str, doc: Document | None) -> None: ...

    async def tenant_settings(self, tenant_id: int) -> TenantSettings:
        async with self._read() as db:
            doc = await db.tenant_settings.find_one({"_id": tenant_id})
        if doc is None:
            return TenantSettings()
        return TenantSettings(
            telemetry_retention_days=doc["telemetry_retention_days"],
            alert_retention_days=doc["alert_retention_days"],
            location_visibility=doc["location_visibility"],
        )

    async def set_tenant_settings(
        self, tenant_id: int, settings: TenantSettings, *, audit: AuditEntry | None = None
    ) -> None:
        async with self._write() as db:
            # An update, not a replace: a replace would drop an entry a stopped write left pending.
            entry = None if audit is None else await self._audit_doc(audit)
            await db.tenant_settings.update_one(
                {"_id": tenant_id}, with_audit({"$set": settings.as_dict()}, entry), upsert=True
            )
            await self._settle_audit("tenant_settings", entry)

"""SQLite adapter, tenant settings (a mixin of SqliteStore)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import orjson

from shared.store.audit import AuditEntry
from shared.store.sqlite_audit import insert_audit
from shared.store.tenant_settings import TenantSettings

T = TypeVar("T")


class SqliteTenantSettings:
    SCHEMA = """
CREATE TABLE IF NOT EXISTS tenant_settings (
    tenant_id INTEGER PRIMARY KEY REFERENCES tenants(id), settings BLOB NOT NULL);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def tenant_settings(self, tenant_id: int) -> TenantSettings:
        row = await self._read(
            lambda c: c.execute("SELECT settings FROM tenant_settings WHERE tenant_id = ?", (tenant_id,)).fetchone()
        )
        return TenantSettings(**orjson.loads(row[0])) if row else TenantSettings()

    async def set_tenant_settings(
        self, tenant_id: int, settings: TenantSettings, *, audit: AuditEntry | None = None
    ) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO tenant_settings(tenant_id, settings) VALUES (?, ?)"
                " ON CONFLICT(tenant_id) DO UPDATE SET settings = excluded.settings",
                (tenant_id, orjson.dumps(settings.as_dict())),
            )
            insert_audit(c, audit)

        await self._write(run)

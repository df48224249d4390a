"""SQLite adapter, geofence half (a mixin of SqliteStore): shapes and lists stored as JSON text."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from shared.store.audit import AuditEntry
from shared.store.geofences import Geofence
from shared.store.sqlite_audit import insert_audit

T = TypeVar("T")

_GEOFENCE_COLUMNS = "id, tenant_id, name, shape, devices, alert_on, created_at"


class SqliteGeofences:
    # AUTOINCREMENT: an id is never given again, so a detector's state for a deleted
    # geofence can never be taken for a new one's.
    SCHEMA = """
CREATE TABLE IF NOT EXISTS geofences (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id INTEGER NOT NULL REFERENCES tenants(id), name TEXT NOT NULL,
    shape TEXT NOT NULL, devices TEXT NOT NULL, alert_on TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS geofences_by_tenant ON geofences(tenant_id, id);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

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
        def run(c: sqlite3.Connection) -> Geofence:
            cursor = c.execute(
                "INSERT INTO geofences(tenant_id, name, shape, devices, alert_on, created_at) VALUES (?,?,?,?,?,?)",
                (
                    tenant_id,
                    name,
                    orjson.dumps(shape).decode(),
                    orjson.dumps(list(devices)).decode(),
                    orjson.dumps(list(alert_on)).decode(),
                    time.time(),
                ),
            )
            row = c.execute(f"SELECT {_GEOFENCE_COLUMNS} FROM geofences WHERE id = ?", (cursor.lastrowid,)).fetchone()
            insert_audit(c, None if audit is None else replace(audit, target_id=str(cursor.lastrowid)))
            return _geofence(row)

        return await self._write(run)

    async def geofences(self, tenant_id: int) -> list[Geofence]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_GEOFENCE_COLUMNS} FROM geofences WHERE tenant_id = ? ORDER BY id",
                (tenant_id,),
            ).fetchall()
        )
        return [_geofence(row) for row in rows]

    async def geofence(self, tenant_id: int, geofence_id: int) -> Geofence | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_GEOFENCE_COLUMNS} FROM geofences WHERE tenant_id = ? AND id = ?",
                (tenant_id, geofence_id),
            ).fetchone()
        )
        return _geofence(row) if row else None

    async def delete_geofence(self, tenant_id: int, geofence_id: int, *, audit: AuditEntry | None = None) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cursor = c.execute("DELETE FROM geofences WHERE tenant_id = ? AND id = ?", (tenant_id, geofence_id))
            if cursor.rowcount:
                insert_audit(c, audit)
            return bool(cursor.rowcount)

        return await self._write(run)


def _geofence(row: tuple[Any, ...]) -> Geofence:
    id_, tenant_id, name, shape, devices, alert_on, created_at = row
    return Geofence(
        id_,
        tenant_id,
        name,
        orjson.loads(shape),
        tuple(orjson.loads(devices)),
        tuple(orjson.loads(alert_on)),
        created_at,
    )

"""SQLite adapter, the audit log (a mixin of SqliteStore).

`insert_audit` runs inside the transaction of the change it records, so the
two commit or roll back together.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from shared.store.audit import Actor, AuditEntry, AuditRecord

T = TypeVar("T")

_COLUMNS = "id, at, tenant_id, actor_type, actor_id, actor_label, action, target_type, target_id, detail"


def insert_audit(c: sqlite3.Connection, entry: AuditEntry | None, at: float | None = None) -> AuditRecord | None:
    """Append the entry within the caller's transaction (nothing for None)."""
    if entry is None:
        return None
    at = time.time() if at is None else at
    actor = entry.actor
    cursor = c.execute(
        f"INSERT INTO audit({_COLUMNS.removeprefix('id, ')}) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            at,
            entry.tenant_id,
            actor.type,
            actor.id,
            actor.label,
            entry.action,
            entry.target_type,
            entry.target_id,
            orjson.dumps(entry.detail),
        ),
    )
    return AuditRecord(int(cursor.lastrowid or 0), at, entry)


def _record(row: tuple[Any, ...]) -> AuditRecord:
    id_, at, tenant_id, actor_type, actor_id, actor_label, action, target_type, target_id, detail = row
    actor = Actor(actor_type, actor_id, actor_label)
    return AuditRecord(id_, at, AuditEntry(tenant_id, actor, action, target_type, target_id, orjson.loads(detail)))


class SqliteAudit:
    SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, tenant_id INTEGER NOT NULL,
    actor_type TEXT NOT NULL, actor_id TEXT, actor_label TEXT NOT NULL,
    action TEXT NOT NULL, target_type TEXT NOT NULL, target_id TEXT, detail BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit(tenant_id, id);
CREATE INDEX IF NOT EXISTS audit_by_action ON audit(tenant_id, action, id);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def record_audit(self, entry: AuditEntry) -> AuditRecord:
        record = await self._write(lambda c: insert_audit(c, entry))
        assert record is not None
        return record

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
        where: list[str] = ["tenant_id = ?"]
        params: list[float | int | str] = [tenant_id]
        for clause, value in (("at >= ?", since), ("at < ?", until), ("action = ?", action), ("id < ?", before_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        rows = await self._read(lambda c: c.execute(sql, (*params, limit)).fetchall())
        return [_record(row) for row in rows]

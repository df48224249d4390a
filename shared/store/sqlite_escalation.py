"""SQLite adapter, escalation half (a mixin of SqliteStore): policies and the plan of each open alert."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import orjson

from shared.store.audit import AuditEntry
from shared.store.escalation import EscalationPolicy, EscalationStep, ScheduledEscalation
from shared.store.sqlite_audit import insert_audit

T = TypeVar("T")


def _policy(row: tuple[int, bytes, float] | None) -> EscalationPolicy | None:
    if row is None:
        return None
    steps = tuple(EscalationStep.decoded(s) for s in orjson.loads(row[1]))
    return EscalationPolicy(row[0], steps, row[2])


class SqliteEscalation:
    SCHEMA = """
CREATE TABLE IF NOT EXISTS escalation_policies (
    tenant_id INTEGER PRIMARY KEY REFERENCES tenants(id), steps BLOB NOT NULL, updated_at REAL NOT NULL);
-- One row per alert still escalating: its next step and when it is due.
CREATE TABLE IF NOT EXISTS escalations (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts(id), tenant_id INTEGER NOT NULL,
    step INTEGER NOT NULL, due_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS escalations_due ON escalations(due_at);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def escalation_policy(self, tenant_id: int) -> EscalationPolicy | None:
        return await self._read(
            lambda c: _policy(
                c.execute(
                    "SELECT tenant_id, steps, updated_at FROM escalation_policies WHERE tenant_id = ?",
                    (tenant_id,),
                ).fetchone()
            )
        )

    async def set_escalation_policy(
        self, tenant_id: int, steps: Sequence[EscalationStep], *, audit: AuditEntry | None = None
    ) -> EscalationPolicy:
        now = time.time()
        encoded = orjson.dumps([s.encoded() for s in steps])

        def run(c: sqlite3.Connection) -> None:
            if steps:
                c.execute(
                    "INSERT INTO escalation_policies(tenant_id, steps, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT(tenant_id) DO UPDATE SET steps = excluded.steps, updated_at = excluded.updated_at",
                    (tenant_id, encoded, now),
                )
            else:
                c.execute("DELETE FROM escalation_policies WHERE tenant_id = ?", (tenant_id,))
            insert_audit(c, audit, now)

        await self._write(run)
        return EscalationPolicy(tenant_id, tuple(steps), now)

    async def schedule_escalation(self, *, alert_id: int, tenant_id: int, step: int, due_at: float) -> None:
        await self._write(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO escalations(alert_id, tenant_id, step, due_at) VALUES (?, ?, ?, ?)",
                (alert_id, tenant_id, step, due_at),
            )
        )

    async def due_escalations(self, now: float, *, limit: int = 100) -> list[ScheduledEscalation]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT alert_id, tenant_id, step, due_at FROM escalations WHERE due_at <= ? ORDER BY due_at LIMIT ?",
                (now, limit),
            ).fetchall()
        )
        return [ScheduledEscalation(*row) for row in rows]

    async def claim_escalation(self, scheduled: ScheduledEscalation, *, next_due_at: float | None) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if next_due_at is None:
                cursor = c.execute(
                    "DELETE FROM escalations WHERE alert_id = ? AND step = ?", (scheduled.alert_id, scheduled.step)
                )
            else:
                cursor = c.execute(
                    "UPDATE escalations SET step = step + 1, due_at = ? WHERE alert_id = ? AND step = ?",
                    (next_due_at, scheduled.alert_id, scheduled.step),
                )
            return cursor.rowcount == 1

        return await self._write(run)

    async def cancel_escalation(self, alert_id: int) -> None:
        await self._write(lambda c: c.execute("DELETE FROM escalations WHERE alert_id = ?", (alert_id,)))

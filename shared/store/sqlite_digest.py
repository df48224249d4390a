"""SQLite adapter, the weekly digest's claims (a mixin of SqliteStore; shared/store/digest.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

T = TypeVar("T")


class SqliteDigest:
    SCHEMA = """
-- One row per tenant and ISO week: its key is the exactly-once guarantee (claim = insert).
CREATE TABLE IF NOT EXISTS weekly_digests (
    tenant_id INTEGER NOT NULL REFERENCES tenants(id), week TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('claimed', 'sent')), claimed_at REAL NOT NULL,
    sent_at REAL, recipients INTEGER,
    PRIMARY KEY (tenant_id, week));
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def claim_weekly_digest(self, tenant_id: int, week: str, *, stale_before: float) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            # Inserted, or a stale unfinished claim taken over: one row changed. Otherwise none.
            cursor = c.execute(
                "INSERT INTO weekly_digests(tenant_id, week, status, claimed_at) VALUES (?, ?, 'claimed', ?)"
                " ON CONFLICT(tenant_id, week) DO UPDATE SET claimed_at = excluded.claimed_at"
                " WHERE status = 'claimed' AND claimed_at < ?",
                (tenant_id, week, time.time(), stale_before),
            )
            return cursor.rowcount == 1

        return await self._write(run)

    async def finish_weekly_digest(self, tenant_id: int, week: str, *, recipients: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE weekly_digests SET status = 'sent', sent_at = ?, recipients = ?"
                " WHERE tenant_id = ? AND week = ?",
                (time.time(), recipients, tenant_id, week),
            )
        )

"""SQLite adapter, Web Push half (a mixin of SqliteStore): subscriptions and the kept VAPID key."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shared.store.push import PushSubscription

T = TypeVar("T")

_COLUMNS = "id, tenant_id, user_id, endpoint, p256dh, auth, created_at"


def _subscription(row: tuple[Any, ...]) -> PushSubscription:
    return PushSubscription(*row)


class SqlitePush:
    SCHEMA = """
CREATE TABLE IF NOT EXISTS push_subscriptions (
    id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
    endpoint TEXT NOT NULL UNIQUE, p256dh TEXT NOT NULL, auth TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS push_subscriptions_by_tenant ON push_subscriptions(tenant_id);
-- Server-wide secrets made once (the VAPID private key), by name.
CREATE TABLE IF NOT EXISTS server_keys (name TEXT PRIMARY KEY, value TEXT NOT NULL, created_at REAL NOT NULL);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def add_push_subscription(
        self, *, tenant_id: int, user_id: int, endpoint: str, p256dh: str, auth: str
    ) -> PushSubscription:
        def run(c: sqlite3.Connection) -> PushSubscription:
            c.execute(
                "INSERT INTO push_subscriptions(tenant_id, user_id, endpoint, p256dh, auth, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(endpoint) DO UPDATE SET tenant_id = excluded.tenant_id,"
                " user_id = excluded.user_id, p256dh = excluded.p256dh, auth = excluded.auth",
                (tenant_id, user_id, endpoint, p256dh, auth, time.time()),
            )
            row = c.execute(f"SELECT {_COLUMNS} FROM push_subscriptions WHERE endpoint = ?", (endpoint,)).fetchone()
            return _subscription(row)

        return await self._write(run)

    async def push_subscriptions(self, tenant_id: int) -> list[PushSubscription]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM push_subscriptions WHERE tenant_id = ? ORDER BY id",
                (tenant_id,),
            ).fetchall()
        )
        return [_subscription(row) for row in rows]

    async def delete_push_subscription(
        self, tenant_id: int, subscription_id: int, *, user_id: int | None = None
    ) -> bool:
        query, params = "DELETE FROM push_subscriptions WHERE id = ? AND tenant_id = ?", [subscription_id, tenant_id]
        if user_id is not None:
            query, params = query + " AND user_id = ?", [*params, user_id]
        return await self._write(lambda c: c.execute(query, params).rowcount == 1)

    async def keep_vapid_private_key(self, candidate: str) -> str:
        def run(c: sqlite3.Connection) -> str:
            c.execute(
                "INSERT OR IGNORE INTO server_keys(name, value, created_at) VALUES ('vapid', ?, ?)",
                (candidate, time.time()),
            )
            return str(c.execute("SELECT value FROM server_keys WHERE name = 'vapid'").fetchone()[0])

        return await self._write(run)

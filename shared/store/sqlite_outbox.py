"""SQLite adapter, the outbox (a mixin of SqliteStore): entries in commit order for the relay.

Entries are written by the transactions whose changes they announce (the
telemetry commit, alert changes); AUTOINCREMENT never gives an id again, so a
relay's cursor never skips an entry written after a removal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import orjson

from shared.store.outbox import OutboxEntry

T = TypeVar("T")


class SqliteOutbox:
    SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
    created_at REAL NOT NULL);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def outbox_pending(self, limit: int, *, after_id: int = 0) -> list[OutboxEntry]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        )
        return [OutboxEntry(*row) for row in rows]

    async def outbox_remove(self, ids: Sequence[int]) -> None:
        await self._write(
            lambda c: c.execute(
                "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))", (orjson.dumps(list(ids)),)
            )
        )

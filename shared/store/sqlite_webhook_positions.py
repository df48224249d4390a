"""SQLite adapter, the `positions` webhook event (a mixin of SqliteStore): pending positions and
their batching into deliveries, each batch in one transaction (see webhook_positions.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from shared.store.webhook_positions import (
    MARKER_KEEP_S,
    MAX_BATCH_ITEMS,
    POSITIONS_EVENT,
    PositionItem,
    batch_event_id,
    parts,
    positions_body,
    without_device,
)

T = TypeVar("T")


def erase_device_webhook_positions(c: sqlite3.Connection, device_id: int, *, tenant_id: int, imei: str) -> None:
    """Drop a device's positions from the rows not yet batched and from the positions deliveries
    made of them, sent or not (within its erasure's transaction: only the audit log may name it)."""
    for delivery_id, payload in c.execute(
        "SELECT id, payload FROM webhook_deliveries WHERE tenant_id = ? AND type = ? AND instr(payload, ?) > 0",
        (tenant_id, POSITIONS_EVENT, imei.encode()),
    ).fetchall():
        c.execute(
            "UPDATE webhook_deliveries SET payload = ? WHERE id = ?",
            (without_device(bytes(payload), imei), delivery_id),
        )
    rows = c.execute(
        "SELECT id, items FROM webhook_positions_pending WHERE tenant_id = ? AND event_id IS NULL"
        " AND EXISTS (SELECT 1 FROM json_each(device_ids) WHERE value = ?)",
        (tenant_id, device_id),
    ).fetchall()
    for row_id, items in rows:
        kept = [item for item in orjson.loads(items) if item[0] != device_id]
        if not kept:  # nothing left to send: no empty batch either
            c.execute("DELETE FROM webhook_positions_pending WHERE id = ?", (row_id,))
            continue
        devices = sorted({item[0] for item in kept})
        c.execute(
            "UPDATE webhook_positions_pending SET items = ?, device_ids = ?, item_count = ? WHERE id = ?",
            (orjson.dumps(kept), orjson.dumps(devices).decode(), len(kept), row_id),
        )


class SqliteWebhookPositions:
    # event_id is NULL while a row is pending; once batched, its items are dropped and it stays a
    # while as a marker (batched_at) so a redelivered message is still recognised.
    SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_positions_pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id INTEGER NOT NULL,
    endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    message_id TEXT NOT NULL, part INTEGER NOT NULL, items BLOB NOT NULL, device_ids TEXT NOT NULL,
    item_count INTEGER NOT NULL, created_at REAL NOT NULL, event_id TEXT, batched_at REAL,
    UNIQUE (endpoint_id, message_id, part));
CREATE INDEX IF NOT EXISTS webhook_positions_waiting ON webhook_positions_pending(endpoint_id, id)
    WHERE event_id IS NULL;
CREATE INDEX IF NOT EXISTS webhook_positions_markers ON webhook_positions_pending(batched_at)
    WHERE event_id IS NOT NULL;
-- The event id of each endpoint's newest positions batch: the next waits until it is delivered.
CREATE TABLE IF NOT EXISTS webhook_positions_last (
    endpoint_id INTEGER PRIMARY KEY REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def positions_subscribers(self) -> dict[int, list[int]]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT e.id, e.tenant_id FROM webhook_endpoints e WHERE e.enabled = 1"
                " AND EXISTS (SELECT 1 FROM json_each(e.events) WHERE value = ?) ORDER BY e.id",
                (POSITIONS_EVENT,),
            ).fetchall()
        )
        subscribers: dict[int, list[int]] = {}
        for endpoint_id, tenant_id in rows:
            subscribers.setdefault(tenant_id, []).append(endpoint_id)
        return subscribers

    async def add_pending_positions(
        self,
        *,
        tenant_id: int,
        endpoint_ids: Sequence[int],
        message_id: str,
        items: Sequence[PositionItem],
        at: float,
    ) -> int:
        rows = [
            (orjson.dumps(part), orjson.dumps(sorted({item[0] for item in part})).decode(), len(part))
            for part in parts(items)
        ]

        def run(c: sqlite3.Connection) -> int:
            new = 0
            for endpoint_id in endpoint_ids:
                # Through the endpoint's row: one deleted since the subscribers were cached is skipped.
                added = [
                    c.execute(
                        "INSERT OR IGNORE INTO webhook_positions_pending(tenant_id, endpoint_id, message_id, part,"
                        " items, device_ids, item_count, created_at) SELECT ?, id, ?, ?, ?, ?, ?, ?"
                        " FROM webhook_endpoints WHERE id = ? AND tenant_id = ?",
                        (tenant_id, message_id, n, *row, at, endpoint_id, tenant_id),
                    ).rowcount
                    for n, row in enumerate(rows)
                ]
                new += added[0]
            return new

        return await self._write(run) if rows else 0

    async def pending_positions(self, endpoint_id: int) -> list[dict[str, Any]]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT items FROM webhook_positions_pending WHERE endpoint_id = ? AND event_id IS NULL ORDER BY id",
                (endpoint_id,),
            ).fetchall()
        )
        return [item for (items,) in rows for _, item in orjson.loads(items)]

    async def batch_pending_positions(
        self, *, now: float, max_items: int = MAX_BATCH_ITEMS, min_gap_s: float = 1.0
    ) -> int:
        def due(c: sqlite3.Connection) -> list[tuple[int, int]]:
            """The endpoints with positions waiting whose previous batch is out of the way."""
            waiting = c.execute(
                "SELECT id, tenant_id FROM webhook_endpoints e WHERE EXISTS (SELECT 1 FROM webhook_positions_pending p"
                " WHERE p.endpoint_id = e.id AND p.event_id IS NULL) ORDER BY id"
            ).fetchall()
            return [(endpoint, tenant) for endpoint, tenant in waiting if not _still_owed(c, endpoint, now, min_gap_s)]

        # Looked for on the reader first: this runs several times a second, the writer is ingestion's,
        # and while a receiver is down its endpoint has positions waiting but no batch due.
        if not await self._read(due):
            return 0

        def run(c: sqlite3.Connection) -> int:
            c.execute(
                "DELETE FROM webhook_positions_pending WHERE event_id IS NOT NULL AND batched_at < ?",
                (now - MARKER_KEEP_S,),
            )
            # Looked for again: another pass may have batched meanwhile.
            return sum(_batch(c, endpoint, tenant, now=now, max_items=max_items) for endpoint, tenant in due(c))

        return await self._write(run)


def _still_owed(c: sqlite3.Connection, endpoint_id: int, now: float, min_gap_s: float) -> bool:
    """Whether the endpoint's last positions delivery is pending, or was delivered under `min_gap_s` ago."""
    row = c.execute(
        "SELECT d.status, d.delivered_at FROM webhook_positions_last l JOIN webhook_deliveries d"
        " ON d.endpoint_id = l.endpoint_id AND d.event_id = l.event_id WHERE l.endpoint_id = ?",
        (endpoint_id,),
    ).fetchone()
    if row is None:  # none yet, or its delivery is gone
        return False
    status, delivered_at = row
    return bool(status == "pending" or (delivered_at is not None and now - delivered_at < min_gap_s))


def _batch(c: sqlite3.Connection, endpoint_id: int, tenant_id: int, *, now: float, max_items: int) -> int:
    """Make the endpoint's next batch of waiting positions into a delivery."""
    taken: list[tuple[int, bytes]] = []
    count = 0
    for row_id, items, item_count in c.execute(
        "SELECT id, items, item_count FROM webhook_positions_pending WHERE endpoint_id = ? AND event_id IS NULL"
        " ORDER BY id",
        (endpoint_id,),
    ):
        if taken and count + item_count > max_items:
            break
        taken.append((row_id, items))
        count += item_count
    event_id = batch_event_id(endpoint_id, taken[0][0], taken[-1][0])
    payload = positions_body(event_id, now, [item for _, items in taken for _, item in orjson.loads(items)])
    c.execute(
        "INSERT OR IGNORE INTO webhook_deliveries(tenant_id, endpoint_id, event_id, type, payload, status,"
        " next_attempt_at, first_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
        (tenant_id, endpoint_id, event_id, POSITIONS_EVENT, payload, now, now, now),
    )
    c.executemany(
        "UPDATE webhook_positions_pending SET event_id = ?, batched_at = ?, items = ?, device_ids = '[]' WHERE id = ?",
        [(event_id, now, b"[]", row_id) for row_id, _ in taken],
    )
    c.execute(
        "INSERT INTO webhook_positions_last(endpoint_id, event_id) VALUES (?, ?)"
        " ON CONFLICT(endpoint_id) DO UPDATE SET event_id = excluded.event_id",
        (endpoint_id, event_id),
    )
    return 1

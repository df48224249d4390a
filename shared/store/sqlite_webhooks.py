"""SQLite adapter, partner webhooks (a mixin of SqliteStore): endpoints, deliveries and their leases."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from shared.store.audit import AuditEntry
from shared.store.sqlite_audit import insert_audit
from shared.store.webhooks import AttemptOutcome, WebhookDelivery, WebhookEndpoint, WebhookEvent

T = TypeVar("T")

_ENDPOINT_COLUMNS = "id, tenant_id, url, events, description, enabled, secret, created_at, failing_since"
_DELIVERY_COLUMNS = (
    "id, tenant_id, endpoint_id, event_id, type, payload, status, attempts, last_status, last_error,"
    " next_attempt_at, delivered_at, first_attempt_at, created_at, window_attempts"
)


def _endpoint(row: tuple[Any, ...]) -> WebhookEndpoint:
    id_, tenant_id, url, events, description, enabled, secret, created_at, failing_since = row
    return WebhookEndpoint(
        id_, tenant_id, url, tuple(orjson.loads(events)), description, bool(enabled), secret, created_at, failing_since
    )


def _delivery(row: tuple[Any, ...]) -> WebhookDelivery:
    id_, tenant_id, endpoint_id, event_id, type_, payload, status, attempts, *rest = row
    last_status, last_error, next_attempt_at, delivered_at, first_attempt_at, created_at, window_attempts = rest
    return WebhookDelivery(
        id_,
        tenant_id,
        endpoint_id,
        event_id,
        type_,
        bytes(payload),
        status,
        attempts,
        last_status,
        last_error,
        next_attempt_at,
        delivered_at,
        first_attempt_at,
        created_at,
        window_attempts,
    )


_DUE_ORDER = itemgetter(10, 0)  # a delivery row's next_attempt_at, then its id


def free_room(per_endpoint: int | None, in_flight: Mapping[int, int] | None) -> Callable[[int], int] | None:
    """How many more deliveries to an endpoint a claim may take, or None for no bound."""
    if per_endpoint is None:
        return None
    busy = in_flight or {}
    return lambda endpoint_id: per_endpoint - busy.get(endpoint_id, 0)


# Enabled again: what the endpoint is owed within its retry window is due now, its schedule from the
# first step (it waited up to an hour between the attempts skipped while it was disabled).
_OWED_AGAIN = (
    "UPDATE webhook_deliveries SET next_attempt_at = min(next_attempt_at, ?), window_attempts = 0"
    " WHERE endpoint_id = ? AND status = 'pending'"
)


class SqliteWebhooks:
    SCHEMA = """
-- AUTOINCREMENT: a deleted endpoint's id never names another one (to partners, or to a sender's cache).
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id INTEGER NOT NULL REFERENCES tenants(id), url TEXT NOT NULL,
    events TEXT NOT NULL, description TEXT, enabled INTEGER NOT NULL, secret TEXT NOT NULL, created_at REAL NOT NULL,
    failing_since REAL);
CREATE INDEX IF NOT EXISTS webhook_endpoints_by_tenant ON webhook_endpoints(tenant_id, id);
-- lease_owner/lease_until: who is sending it now, and until when others keep off. window_attempts: the
-- backoff schedule's step (attempts since the retry window opened; a manual retry sets it back to 0).
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL,
    endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL, type TEXT NOT NULL, payload BLOB NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, window_attempts INTEGER NOT NULL DEFAULT 0, last_status INTEGER,
    last_error TEXT, next_attempt_at REAL,
    delivered_at REAL, first_attempt_at REAL NOT NULL, created_at REAL NOT NULL,
    lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0, imei TEXT,
    UNIQUE (endpoint_id, event_id));
-- What is due, per endpoint: a claim reads a few rows of each endpoint with room, never the backlog of
-- an endpoint that hangs (its slots are full) or of one failing for hours (not due yet).
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries(endpoint_id, status, next_attempt_at);
-- imei: the device an event is about, so that erasing the device deletes what is owed about it.
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_device ON webhook_deliveries(tenant_id, imei) WHERE imei IS NOT NULL;
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def add_webhook_endpoint(
        self,
        *,
        tenant_id: int,
        url: str,
        events: Sequence[str],
        description: str | None,
        secret: str,
        audit: AuditEntry | None = None,
    ) -> WebhookEndpoint:
        def run(c: sqlite3.Connection) -> WebhookEndpoint:
            cursor = c.execute(
                "INSERT INTO webhook_endpoints(tenant_id, url, events, description, enabled, secret, created_at)"
                " VALUES (?, ?, ?, ?, 1, ?, ?)",
                (tenant_id, url, orjson.dumps(list(events)).decode(), description, secret, time.time()),
            )
            insert_audit(c, None if audit is None else replace(audit, target_id=str(cursor.lastrowid)))
            return _endpoint(
                c.execute(
                    f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?", (cursor.lastrowid,)
                ).fetchone()
            )

        return await self._write(run)

    async def webhook_endpoints(
        self, tenant_id: int, *, after_id: int | None = None, limit: int = 100
    ) -> list[WebhookEndpoint]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?",
                (tenant_id, after_id or 0, limit),
            ).fetchall()
        )
        return [_endpoint(row) for row in rows]

    async def webhook_endpoint(self, tenant_id: int, endpoint_id: int) -> WebhookEndpoint | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = ? AND id = ?",
                (tenant_id, endpoint_id),
            ).fetchone()
        )
        return None if row is None else _endpoint(row)

    async def update_webhook_endpoint(
        self,
        tenant_id: int,
        endpoint_id: int,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        enabled: bool | None = None,
        description: str | None = None,
        audit: AuditEntry | None = None,
    ) -> WebhookEndpoint | None:
        changes: dict[str, Any] = {"url": url, "description": description}
        changes["events"] = None if events is None else orjson.dumps(list(events)).decode()
        changes["enabled"] = None if enabled is None else int(enabled)
        changes = {name: value for name, value in changes.items() if value is not None}

        def run(c: sqlite3.Connection) -> WebhookEndpoint | None:
            query = f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = ? AND id = ?"
            before = c.execute(query, (tenant_id, endpoint_id)).fetchone()
            if before is None:
                return None
            if changes:
                assignments = ", ".join(f"{name} = ?" for name in changes)  # names from the fixed set above
                c.execute(f"UPDATE webhook_endpoints SET {assignments} WHERE id = ?", (*changes.values(), endpoint_id))
            if enabled and not _endpoint(before).enabled:
                c.execute("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ?", (endpoint_id,))
                c.execute(_OWED_AGAIN, (time.time(), endpoint_id))
            insert_audit(c, audit)
            return _endpoint(c.execute(query, (tenant_id, endpoint_id)).fetchone())

        return await self._write(run)

    async def delete_webhook_endpoint(
        self, tenant_id: int, endpoint_id: int, *, audit: AuditEntry | None = None
    ) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            # Its deliveries go with it (ON DELETE CASCADE).
            cursor = c.execute("DELETE FROM webhook_endpoints WHERE tenant_id = ? AND id = ?", (tenant_id, endpoint_id))
            if cursor.rowcount != 1:
                return False
            insert_audit(c, audit)
            return True

        return await self._write(run)

    async def subscribed_webhook_endpoints(self, tenant_id: int, event_type: str) -> list[WebhookEndpoint]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = ? AND enabled = 1 ORDER BY id",
                (tenant_id,),
            ).fetchall()
        )
        return [endpoint for endpoint in map(_endpoint, rows) if event_type in endpoint.events]

    async def queue_webhook_event(
        self,
        *,
        tenant_id: int,
        endpoint_ids: Sequence[int],
        event_id: str,
        type: str,
        payload: bytes,
        at: float,
        imei: str | None = None,
    ) -> int:
        return await self._write(
            lambda c: _insert_deliveries(c, tenant_id, endpoint_ids, event_id, type, payload, at, imei)
        )

    async def owe_webhook_event(self, event: WebhookEvent, *, at: float) -> int:
        return await self._write(lambda c: owe_event(c, event, at))

    async def webhook_deliveries(
        self, tenant_id: int, endpoint_id: int, *, before_id: int | None = None, limit: int = 100
    ) -> list[WebhookDelivery]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = ? AND endpoint_id = ?"
                " AND id < ? ORDER BY id DESC LIMIT ?",
                (tenant_id, endpoint_id, 2**63 - 1 if before_id is None else before_id, limit),
            ).fetchall()
        )
        return [_delivery(row) for row in rows]

    async def claim_webhook_deliveries(
        self,
        *,
        owner: str,
        now: float,
        lease_s: float,
        limit: int,
        per_endpoint: int | None = None,
        in_flight: Mapping[int, int] | None = None,
    ) -> list[WebhookDelivery]:
        room = free_room(per_endpoint, in_flight)
        # Looked for on the reader first: the sender looks after every alert change and every freed
        # slot, and most looks find nothing it may take, which must not take the one writer that
        # ingestion and alerting commit through.
        if not await self._read(lambda c: _due(c, now, room, 1)):
            return []

        def run(c: sqlite3.Connection) -> list[WebhookDelivery]:
            # One writer at a time: the SELECT and the UPDATE cannot interleave with another claim.
            taken = [_delivery(row) for row in _due(c, now, room, limit)]
            c.executemany(
                "UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ? WHERE id = ?",
                [(owner, now + lease_s, delivery.id) for delivery in taken],
            )
            return taken

        return await self._write(run)

    async def finish_webhook_attempt(self, delivery_id: int, *, owner: str, outcome: AttemptOutcome) -> bool:
        return await self._write(lambda c: _finish_attempt(c, delivery_id, owner, outcome))

    async def finish_webhook_attempts(
        self, attempts: Sequence[tuple[int, AttemptOutcome]], *, owner: str
    ) -> list[bool]:
        return await self._write(lambda c: [_finish_attempt(c, id_, owner, outcome) for id_, outcome in attempts])

    async def retry_webhook_delivery(self, tenant_id: int, endpoint_id: int, event_id: str, *, now: float) -> bool:
        # The lease is dropped too: an attempt under way can no longer record itself over the retry.
        return await self._write(
            lambda c: (
                c.execute(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, first_attempt_at = ?,"
                    " window_attempts = 0, lease_owner = NULL, lease_until = 0"
                    " WHERE tenant_id = ? AND endpoint_id = ? AND event_id = ?",
                    (now, now, tenant_id, endpoint_id, event_id),
                ).rowcount
                == 1
            )
        )

    async def disable_failing_webhook_endpoint(
        self, tenant_id: int, endpoint_id: int, *, failing_since_by: float, audit: AuditEntry | None = None
    ) -> WebhookEndpoint | None:
        def run(c: sqlite3.Connection) -> WebhookEndpoint | None:
            # Conditional on the row as it is now: of several senders finding it failing, one flips it.
            row = c.execute(
                f"UPDATE webhook_endpoints SET enabled = 0 WHERE tenant_id = ? AND id = ? AND enabled = 1"
                f" AND failing_since <= ? RETURNING {_ENDPOINT_COLUMNS}",
                (tenant_id, endpoint_id, failing_since_by),
            ).fetchone()
            if row is None:
                return None
            insert_audit(c, audit)
            return _endpoint(row)

        return await self._write(run)


def owe_event(c: sqlite3.Connection, event: WebhookEvent, at: float) -> int:
    """Owe an event to its tenant's subscribed endpoints within the caller's transaction, so a change
    and the deliveries announcing it are stored together (or not at all)."""
    rows = c.execute(
        "SELECT id, events FROM webhook_endpoints WHERE tenant_id = ? AND enabled = 1", (event.tenant_id,)
    ).fetchall()
    endpoint_ids = [id_ for id_, events in rows if event.type in orjson.loads(events)]
    return _insert_deliveries(c, event.tenant_id, endpoint_ids, event.id, event.type, event.body, at, event.imei)


def _insert_deliveries(
    c: sqlite3.Connection,
    tenant_id: int,
    endpoint_ids: Sequence[int],
    event_id: str,
    type_: str,
    payload: bytes,
    at: float,
    imei: str | None,
) -> int:
    new = 0
    for endpoint_id in endpoint_ids:
        new += c.execute(
            "INSERT OR IGNORE INTO webhook_deliveries(tenant_id, endpoint_id, event_id, type, payload, status,"
            " next_attempt_at, first_attempt_at, created_at, imei) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
            (tenant_id, endpoint_id, event_id, type_, payload, at, at, at, imei),
        ).rowcount
    return new


def erase_device_webhook_deliveries(c: sqlite3.Connection, *, tenant_id: int, imei: str) -> None:
    """Delete the deliveries of events about a device, sent or not (within its erasure's transaction)."""
    c.execute("DELETE FROM webhook_deliveries WHERE tenant_id = ? AND imei = ?", (tenant_id, imei))


def _finish_attempt(c: sqlite3.Connection, delivery_id: int, owner: str, outcome: AttemptOutcome) -> bool:
    row = c.execute(
        "UPDATE webhook_deliveries SET status = ?, last_status = ?, last_error = ?, next_attempt_at = ?,"
        " delivered_at = coalesce(?, delivered_at), attempts = attempts + 1,"
        " window_attempts = window_attempts + 1, lease_owner = NULL, lease_until = 0"
        " WHERE id = ? AND lease_owner = ? RETURNING endpoint_id",
        (
            outcome.status,
            outcome.last_status,
            outcome.last_error,
            outcome.next_attempt_at,
            outcome.delivered_at,
            delivery_id,
            owner,
        ),
    ).fetchone()
    if row is None:
        return False
    if outcome.sent_at is not None:  # the endpoint's health, in the same transaction
        failing_since = "NULL" if outcome.status == "delivered" else "coalesce(failing_since, ?)"
        c.execute(
            f"UPDATE webhook_endpoints SET failing_since = {failing_since} WHERE id = ?",
            (row[0],) if outcome.status == "delivered" else (outcome.sent_at, row[0]),
        )
    return True


def _due(c: sqlite3.Connection, now: float, room: Callable[[int], int] | None, limit: int) -> list[tuple[Any, ...]]:
    """Up to `limit` pending deliveries due by `now` that nobody holds, oldest due first, at most
    `room(endpoint)` of each endpoint: a few index lookups per endpoint, whatever the backlog."""
    rows: list[tuple[Any, ...]] = []
    for (endpoint_id,) in c.execute("SELECT id FROM webhook_endpoints").fetchall():
        wanted = limit if room is None else min(limit, room(endpoint_id))
        if wanted > 0:
            rows += c.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = ? AND status = 'pending'"
                " AND next_attempt_at <= ? AND lease_until < ? ORDER BY next_attempt_at, id LIMIT ?",
                (endpoint_id, now, now, wanted),
            ).fetchall()
    rows.sort(key=_DUE_ORDER)
    return rows[:limit]

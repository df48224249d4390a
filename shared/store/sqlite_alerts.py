"""SQLite adapter, alerting half: alerts, timeline, contacts, notifications (a mixin of SqliteStore).

Every alert creation or status change writes, in the same transaction, a
timeline line, an outbox message on the `alert` topic and the webhook
deliveries owed to the tenant's partners: what dashboards and
notifiers hear is exactly what was stored, once per change.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from shared.alerts.ledger import NotificationRecord
from shared.alerts.serialize import alarm_raised_detail, alert_to_api
from shared.store.alerts import (
    TOPIC_ALERT,
    Alert,
    AlertEvent,
    AlertStatus,
    AlertTransitionRefused,
    Contact,
    delivery_status_detail,
    delivery_status_is_news,
)
from shared.store.audit import AuditEntry
from shared.store.sqlite_audit import insert_audit
from shared.store.sqlite_webhooks import owe_event
from shared.webhook_events import alert_change_event

T = TypeVar("T")

# Columns in the order of the Alert dataclass's fields, so a row is Alert(*row).
_ALERT_COLUMNS = (
    "id, tenant_id, device_id, imei, kind, ts, lat, lon, battery, status, created_at, alarm_id,"
    " acknowledged_at, acknowledged_by, resolved_at, resolved_by, resolution_note"
)
_CONTACT_COLUMNS = "id, tenant_id, name, email, phone, kinds, created_at"
_NOTIFICATION_COLUMNS = (
    "n.alert_id, a.tenant_id, n.contact_id, n.channel, n.step, n.status, n.attempts, n.error, n.updated_at"
)


class SqliteAlerts:
    SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    device_id INTEGER NOT NULL, imei TEXT NOT NULL, kind TEXT NOT NULL, ts INTEGER NOT NULL,
    lat REAL, lon REAL, battery INTEGER, status TEXT NOT NULL DEFAULT 'open', created_at REAL NOT NULL,
    -- The ALARM it came from: one alert per alarm, however often the alarm is delivered.
    -- NULL for alerts the server detects itself (SQLite lets NULLs repeat under UNIQUE).
    alarm_id INTEGER UNIQUE,
    acknowledged_at REAL, acknowledged_by TEXT, resolved_at REAL, resolved_by TEXT, resolution_note TEXT);
CREATE INDEX IF NOT EXISTS alerts_by_tenant ON alerts(tenant_id, id);
CREATE INDEX IF NOT EXISTS alerts_by_status ON alerts(tenant_id, status, id);
CREATE INDEX IF NOT EXISTS alerts_by_imei ON alerts(tenant_id, imei, id);
CREATE INDEX IF NOT EXISTS alerts_by_device ON alerts(device_id, ts);
CREATE INDEX IF NOT EXISTS alerts_by_tenant_ts ON alerts(tenant_id, ts);
CREATE TABLE IF NOT EXISTS alert_events (
    id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id),
    at REAL NOT NULL, action TEXT NOT NULL, actor TEXT, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alert_events_by_alert ON alert_events(alert_id, id);
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id), name TEXT NOT NULL,
    email TEXT, phone TEXT, kinds TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS contacts_by_tenant ON contacts(tenant_id, id);
-- One row per notification: its key is the exactly-once guarantee (claim = insert).
-- contact_id has no foreign key: a deleted contact keeps its history.
CREATE TABLE IF NOT EXISTS notifications (
    alert_id INTEGER NOT NULL REFERENCES alerts(id), contact_id INTEGER NOT NULL,
    channel TEXT NOT NULL, step INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    UNIQUE (alert_id, contact_id, channel, step));
CREATE INDEX IF NOT EXISTS notifications_unfinished ON notifications(updated_at)
    WHERE status IN ('claimed', 'interrupted');
-- What a provider said of a notification it took, keyed by its id there (a Twilio message SID),
-- which is all a delivery status callback names.
CREATE TABLE IF NOT EXISTS notification_deliveries (
    provider_id TEXT PRIMARY KEY, alert_id INTEGER NOT NULL, contact_id INTEGER NOT NULL,
    channel TEXT NOT NULL, step INTEGER NOT NULL, status TEXT, error_code TEXT, updated_at REAL NOT NULL);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    # -- alerts ---------------------------------------------------------------------

    async def raise_alert_from_alarm(self, alarm: dict[str, Any]) -> tuple[Alert, bool]:
        def run(c: sqlite3.Connection) -> tuple[Alert, bool]:
            now = time.time()
            cursor = c.execute(
                "INSERT OR IGNORE INTO alerts(tenant_id, device_id, imei, kind, ts, lat, lon, battery, status,"
                " created_at, alarm_id) VALUES (?,?,?,?,?,?,?,?,'open',?,?)",
                (
                    alarm["tenant_id"],
                    alarm["device_id"],
                    alarm["imei"],
                    alarm["kind"],
                    int(alarm["ts"]),
                    alarm.get("lat"),
                    alarm.get("lon"),
                    alarm.get("battery"),
                    now,
                    alarm["alarm_id"],
                ),
            )
            if cursor.rowcount == 0:  # this alarm was delivered before
                row = c.execute(
                    f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alarm_id = ?", (alarm["alarm_id"],)
                ).fetchone()
                return Alert(*row), False
            alert = _alert_by_id(c, int(cursor.lastrowid or 0))
            _record_change(c, alert, "created", action="raised", actor=None, now=now, detail=alarm_raised_detail(alarm))
            return alert, True

        return await self._write(run)

    async def alert(self, tenant_id: int, alert_id: int) -> Alert | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE tenant_id = ? AND id = ?",
                (tenant_id, alert_id),
            ).fetchone()
        )
        return Alert(*row) if row else None

    async def alerts(
        self,
        tenant_id: int,
        *,
        status: AlertStatus | None = None,
        imei: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Alert]:
        clauses: list[str] = ["tenant_id = ?"]
        params: list[Any] = [tenant_id]
        for clause, value in (("status = ?", status), ("imei = ?", imei), ("id < ?", before_id)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if imei is not None:
            # The device registered under that IMEI now: a retired one's alerts are not its successor's.
            clauses.append("device_id = (SELECT id FROM devices WHERE imei = ?)")
            params.append(imei)
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?"
        rows = await self._read(lambda c: c.execute(sql, (*params, limit)).fetchall())
        return [Alert(*row) for row in rows]

    async def alerts_overlapping(
        self, device_ids: Sequence[int], *, start: float | None = None, end: float | None = None
    ) -> list[Alert]:
        if not device_ids:
            return []
        marks = ",".join("?" * len(device_ids))
        sql = (
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE device_id IN ({marks})"
            " AND (? IS NULL OR ts <= ?) AND (? IS NULL OR resolved_at IS NULL OR resolved_at >= ?)"
            " ORDER BY ts, id"
        )
        params = (*device_ids, end, end, start, start)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [Alert(*row) for row in rows]

    async def alerts_raised(
        self, tenant_id: int, *, since: float, until: float, device_id: int | None = None
    ) -> list[Alert]:
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE tenant_id = ? AND ts >= ? AND ts < ?"
        params: tuple[Any, ...] = (tenant_id, since, until)
        if device_id is not None:
            sql += " AND device_id = ?"
            params += (device_id,)
        rows = await self._read(lambda c: c.execute(sql + " ORDER BY ts, id", params).fetchall())
        return [Alert(*row) for row in rows]

    async def alert_escalations(self, alert_ids: Sequence[int]) -> dict[int, int]:
        def run(c: sqlite3.Connection) -> dict[int, int]:
            counts: dict[int, int] = {}
            # In slices: SQLite caps the number of parameters of one statement.
            for start in range(0, len(alert_ids), 500):
                chunk = list(alert_ids[start : start + 500])
                rows = c.execute(
                    f"SELECT alert_id, COUNT(*) FROM alert_events WHERE alert_id IN ({','.join('?' * len(chunk))})"
                    " AND action = 'escalated' GROUP BY alert_id",
                    chunk,
                ).fetchall()
                counts.update({int(alert_id): int(n) for alert_id, n in rows})
            return counts

        return await self._read(run)

    async def acknowledge_alert(
        self,
        tenant_id: int,
        alert_id: int,
        *,
        by: str,
        detail: dict[str, Any] | None = None,
        audit: AuditEntry | None = None,
    ) -> Alert | None:
        def run(c: sqlite3.Connection) -> Alert | None:
            alert = _alert_in_tenant(c, tenant_id, alert_id)
            if alert is None or alert.status == "acknowledged":
                return alert  # acknowledging twice changes nothing and tells nobody
            if alert.status == "resolved":
                raise AlertTransitionRefused(f"alert {alert_id} is resolved")
            now = time.time()
            c.execute(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
                (now, by, alert_id),
            )
            alert = _alert_by_id(c, alert_id)
            _record_change(c, alert, "acknowledged", action="acknowledged", actor=by, now=now, detail=detail or {})
            insert_audit(c, audit, now)
            return alert

        return await self._write(run)

    async def resolve_alert(
        self, tenant_id: int, alert_id: int, *, by: str, note: str | None = None, audit: AuditEntry | None = None
    ) -> Alert | None:
        def run(c: sqlite3.Connection) -> Alert | None:
            alert = _alert_in_tenant(c, tenant_id, alert_id)
            if alert is None or alert.status == "resolved":
                return alert
            now = time.time()
            c.execute(
                "UPDATE alerts SET status = 'resolved', resolved_at = ?, resolved_by = ?, resolution_note = ?"
                " WHERE id = ?",
                (now, by, note, alert_id),
            )
            alert = _alert_by_id(c, alert_id)
            _record_change(
                c, alert, "resolved", action="resolved", actor=by, now=now, detail={"note": note} if note else {}
            )
            insert_audit(c, audit, now)
            return alert

        return await self._write(run)

    async def alert_timeline(self, tenant_id: int, alert_id: int) -> list[AlertEvent]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT e.alert_id, e.at, e.action, e.actor, e.detail FROM alert_events e"
                " JOIN alerts a ON a.id = e.alert_id WHERE a.tenant_id = ? AND e.alert_id = ? ORDER BY e.id",
                (tenant_id, alert_id),
            ).fetchall()
        )
        return [
            AlertEvent(alert_id, at, action, actor, orjson.loads(detail))
            for alert_id, at, action, actor, detail in rows
        ]

    async def add_alert_event(self, alert_id: int, *, action: str, actor: str | None, detail: dict[str, Any]) -> None:
        await self._write(lambda c: _add_event(c, alert_id, time.time(), action, actor, detail))

    # -- contacts -------------------------------------------------------------------

    async def add_contact(
        self,
        *,
        tenant_id: int,
        name: str,
        email: str | None,
        phone: str | None,
        kinds: tuple[str, ...],
        audit: AuditEntry | None = None,
    ) -> Contact:
        def run(c: sqlite3.Connection) -> Contact:
            cursor = c.execute(
                "INSERT INTO contacts(tenant_id, name, email, phone, kinds, created_at) VALUES (?,?,?,?,?,?)",
                (tenant_id, name, email, phone, orjson.dumps(list(kinds)).decode(), time.time()),
            )
            row = c.execute(f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE id = ?", (cursor.lastrowid,)).fetchone()
            insert_audit(c, None if audit is None else replace(audit, target_id=str(cursor.lastrowid)))
            return _contact(row)

        return await self._write(run)

    async def contacts(self, tenant_id: int) -> list[Contact]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE tenant_id = ? ORDER BY id",
                (tenant_id,),
            ).fetchall()
        )
        return [_contact(row) for row in rows]

    async def delete_contact(self, tenant_id: int, contact_id: int, *, audit: AuditEntry | None = None) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cursor = c.execute("DELETE FROM contacts WHERE tenant_id = ? AND id = ?", (tenant_id, contact_id))
            if cursor.rowcount:
                insert_audit(c, audit)
            return bool(cursor.rowcount)

        return await self._write(run)

    # -- notifications ----------------------------------------------------------------

    async def claim_notification(self, *, alert_id: int, contact_id: int, channel: str, step: int) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = c.execute(
                "INSERT OR IGNORE INTO notifications(alert_id, contact_id, channel, step, status, attempts,"
                " created_at, updated_at) VALUES (?,?,?,?,'claimed',0,?,?)",
                (alert_id, contact_id, channel, step, now, now),
            )
            return cursor.rowcount == 1

        return await self._write(run)

    async def finish_notification(
        self,
        *,
        alert_id: int,
        contact_id: int,
        channel: str,
        step: int,
        status: str,
        attempts: int,
        error: str | None = None,
        provider_id: str | None = None,
    ) -> None:
        # Also called with status 'claimed' between attempts: that touch keeps the
        # claim from looking abandoned while its sender is still retrying.
        def run(c: sqlite3.Connection) -> None:
            now = time.time()
            key = (alert_id, contact_id, channel, step)
            c.execute(
                "UPDATE notifications SET status = ?, attempts = ?, error = ?, updated_at = ?"
                " WHERE alert_id = ? AND contact_id = ? AND channel = ? AND step = ?",
                (status, attempts, error, now, *key),
            )
            if provider_id is not None:
                c.execute(
                    "INSERT OR IGNORE INTO notification_deliveries(provider_id, alert_id, contact_id, channel,"
                    " step, updated_at) VALUES (?,?,?,?,?,?)",
                    (provider_id, *key, now),
                )

        await self._write(run)

    async def record_delivery_status(self, *, provider_id: str, status: str, error_code: str | None) -> int | None:
        def run(c: sqlite3.Connection) -> int | None:
            row = c.execute(
                "SELECT d.alert_id, d.contact_id, d.channel, d.step, d.status, ct.name FROM notification_deliveries d"
                " LEFT JOIN contacts ct ON ct.id = d.contact_id WHERE d.provider_id = ?",
                (provider_id,),
            ).fetchone()
            if row is None:
                return None
            alert_id, contact_id, channel, step, previous, contact = row
            if not delivery_status_is_news(previous, status):
                return int(alert_id)
            now = time.time()
            c.execute(
                "UPDATE notification_deliveries SET status = ?, error_code = ?, updated_at = ? WHERE provider_id = ?",
                (status, error_code, now, provider_id),
            )
            c.execute(
                "UPDATE notifications SET updated_at = ?"
                " WHERE alert_id = ? AND contact_id = ? AND channel = ? AND step = ?",
                (now, alert_id, contact_id, channel, step),
            )
            _add_event(
                c,
                alert_id,
                now,
                "delivery_status",
                None,
                delivery_status_detail(
                    provider_id=provider_id,
                    status=status,
                    error_code=error_code,
                    channel=channel,
                    contact_id=contact_id,
                    contact=contact,
                ),
            )
            return int(alert_id)

        return await self._write(run)

    async def unfinished_notifications(self, *, stale_before: float, limit: int = 100) -> list[NotificationRecord]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications n JOIN alerts a ON a.id = n.alert_id"
                " WHERE n.status = 'interrupted' OR (n.status = 'claimed' AND n.updated_at < ?)"
                " ORDER BY n.updated_at LIMIT ?",
                (stale_before, limit),
            ).fetchall()
        )
        return [NotificationRecord(*row) for row in rows]

    async def reclaim_notification(self, record: NotificationRecord) -> bool:
        # Compare-and-set on the row exactly as listed: of several processes
        # recovering at once, one wins; a sender that touched its claim since keeps it.
        def run(c: sqlite3.Connection) -> bool:
            cursor = c.execute(
                "UPDATE notifications SET status = 'claimed', updated_at = ?"
                " WHERE alert_id = ? AND contact_id = ? AND channel = ? AND step = ? AND status = ? AND updated_at = ?",
                (
                    max(time.time(), record.updated_at + 1e-3),
                    record.alert_id,
                    record.contact_id,
                    record.channel,
                    record.step,
                    record.status,
                    record.updated_at,
                ),
            )
            return cursor.rowcount == 1

        return await self._write(run)

    async def notifications_of(self, tenant_id: int, alert_id: int) -> list[NotificationRecord]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications n JOIN alerts a ON a.id = n.alert_id"
                " WHERE a.tenant_id = ? AND n.alert_id = ? ORDER BY n.rowid",
                (tenant_id, alert_id),
            ).fetchall()
        )
        return [NotificationRecord(*row) for row in rows]


def _alert_by_id(c: sqlite3.Connection, alert_id: int) -> Alert:
    return Alert(*c.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)).fetchone())


def _alert_in_tenant(c: sqlite3.Connection, tenant_id: int, alert_id: int) -> Alert | None:
    row = c.execute(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE tenant_id = ? AND id = ?", (tenant_id, alert_id)
    ).fetchone()
    return Alert(*row) if row else None


def _contact(row: tuple[Any, ...]) -> Contact:
    id_, tenant_id, name, email, phone, kinds, created_at = row
    return Contact(id_, tenant_id, name, email, phone, tuple(orjson.loads(kinds)), created_at)


def _add_event(
    c: sqlite3.Connection, alert_id: int, at: float, action: str, actor: str | None, detail: dict[str, Any]
) -> None:
    c.execute(
        "INSERT INTO alert_events(alert_id, at, action, actor, detail) VALUES (?,?,?,?,?)",
        (alert_id, at, action, actor, orjson.dumps(detail).decode()),
    )


def _record_change(
    c: sqlite3.Connection,
    alert: Alert,
    event: str,
    *,
    action: str,
    actor: str | None,
    now: float,
    detail: dict[str, Any],
) -> None:
    """The timeline line, the outbox message and the webhook deliveries that go with every alert change."""
    _add_event(c, alert.id, now, action, actor, detail)
    shown = alert_to_api(alert)
    payload = orjson.dumps({"event": event, "tenant_id": alert.tenant_id, "alert": shown})
    c.execute("INSERT INTO outbox(topic, payload, created_at) VALUES (?, ?, ?)", (TOPIC_ALERT, payload, now))
    webhook_event = alert_change_event(alert.tenant_id, event, shown)
    if webhook_event is not None:
        owe_event(c, webhook_event, now)

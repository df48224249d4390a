"""SQLite adapter, devices and their downlink commands (a mixin of SqliteStore).

The telemetry commit (sqlite.py) updates a device's state columns (last
seen, battery, last fix) and the commands its frames answer.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from shared.store.audit import AuditEntry
from shared.store.devices import CommandRecord, Device, DeviceExists
from shared.store.messages import message_without_device
from shared.store.sqlite_audit import insert_audit
from shared.store.sqlite_webhook_positions import erase_device_webhook_positions
from shared.store.sqlite_webhooks import erase_device_webhook_deliveries

T = TypeVar("T")

_DEVICE_COLUMNS = (
    "id, tenant_id, imei, name, token_hash, enabled, created_at, last_seen, battery,"
    " last_fix_ts, last_lat_e7, last_lon_e7, protocol, model"
)
COMMAND_COLUMNS = (
    "c.id, c.device_id, d.imei, c.cmd, c.args, c.status, c.seq, c.created_at, c.sent_at, c.result_at, c.expires_at"
)
# What `erase` deletes besides the device row: its own rows, then those of its alerts.
_ERASE_BY_DEVICE = ("frame_runs", "alarms", "commands", "report_hours", "report_marks")
# How erasing a device (retire_device(erase=True)) treats every table: a table missing here fails
# tests/contract/test_erasure_contract.py, so a new table cannot be forgotten by erasure.
ERASURE = {
    "devices": "the device's row",
    **{table: "its rows" for table in ("frame_runs", "alarms", "commands", "device_settings")},
    **{table: "its rows (reports' hour totals)" for table in ("report_hours", "report_marks")},
    "report_progress": "never about a device (how far reports' marks have read frame_runs)",
    "alerts": "its alerts",
    **{table: "its alerts' rows" for table in ("alert_events", "notifications", "notification_deliveries")},
    **{table: "its alerts' rows" for table in ("detections", "escalations", "sms_reply_codes")},
    "outbox": "messages about it deleted, telemetry messages rewritten without it",
    "webhook_deliveries": "events about it deleted, positions batches rewritten without it",
    "webhook_positions_pending": "its positions",
    "geofences": "its IMEI taken out of their device lists",
    "audit": "kept: who did what, the one place that may still name the IMEI (CONTRACT §8)",
    # A known gap: an answer may name the worker (the device's name), never the IMEI.
    "sms_inbound": "kept a week: the answers sent to SMS replies, for Twilio's retries",
    **{
        table: "never about a device"
        for table in ("tenants", "users", "api_keys", "contacts", "escalation_policies", "push_subscriptions")
    },
    **{
        table: "never about a device"
        for table in ("server_keys", "webhook_endpoints", "webhook_positions_last", "tenant_settings")
    },
    # The weekly digest (docs/reports.md): who asked for it, which weeks went out.
    **{name: "never about a device" for name in ("user_preferences", "weekly_digests")},
    "sqlite_sequence": "SQLite's own counters",
}
# Well under SQLite's limit on a statement's parameters (32,766 since 3.32, 999 before).
_IDS_PER_QUERY = 500
_ERASE_BY_ALERT = (
    "alert_events",
    "notifications",
    "notification_deliveries",
    "detections",
    "escalations",
    "sms_reply_codes",
)


def _device(row: tuple[Any, ...]) -> Device:
    values = list(row)
    values[5] = bool(values[5])
    return Device(*values)


def _device_or_none(row: tuple[Any, ...] | None) -> Device | None:
    return None if row is None else _device(row)


class SqliteDevices:
    SCHEMA = """
-- AUTOINCREMENT: a retired device's id is never given again, so a device registered
-- later (even with the same IMEI) can't inherit the records still keyed by it.
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    imei TEXT NOT NULL UNIQUE, name TEXT NOT NULL, token_hash BLOB NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL,
    last_seen REAL, battery INTEGER, last_fix_ts INTEGER, last_lat_e7 INTEGER, last_lon_e7 INTEGER,
    battery_ts INTEGER, protocol TEXT NOT NULL DEFAULT 'xsole', model TEXT);
CREATE INDEX IF NOT EXISTS devices_by_tenant ON devices(tenant_id);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL, cmd INTEGER NOT NULL,
    args BLOB NOT NULL, status TEXT NOT NULL DEFAULT 'pending', seq INTEGER,
    created_at REAL NOT NULL, sent_at REAL, result_at REAL, expires_at REAL);
CREATE INDEX IF NOT EXISTS commands_by_device ON commands(device_id, id);
CREATE INDEX IF NOT EXISTS commands_open ON commands(status, device_id) WHERE status IN ('pending', 'sent');
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    # -- devices -------------------------------------------------------------------------

    async def add_device(
        self,
        *,
        tenant_id: int,
        imei: str,
        name: str,
        token_hash: bytes,
        protocol: str = "xsole",
        model: str | None = None,
        audit: AuditEntry | None = None,
    ) -> Device:
        def run(c: sqlite3.Connection) -> Device:
            try:
                c.execute(
                    "INSERT INTO devices(tenant_id, imei, name, token_hash, created_at, protocol, model)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (tenant_id, imei, name, token_hash, time.time(), protocol, model),
                )
            except sqlite3.IntegrityError as exc:
                raise DeviceExists(imei) from exc
            device = _device(c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE imei = ?", (imei,)).fetchone())
            insert_audit(c, None if audit is None else replace(audit, target_id=imei))
            return device

        return await self._write(run)

    async def device(self, device_id: int) -> Device | None:
        return await self._read(
            lambda c: _device_or_none(
                c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?", (device_id,)).fetchone()
            )
        )

    async def devices_by_ids(self, device_ids: Sequence[int]) -> list[Device]:
        ids = list(device_ids)

        def run(c: sqlite3.Connection) -> list[tuple[Any, ...]]:
            rows: list[tuple[Any, ...]] = []
            for start in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[start : start + _IDS_PER_QUERY]
                marks = ",".join("?" * len(chunk))
                rows += c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id IN ({marks})", chunk).fetchall()
            return rows

        return [_device(row) for row in await self._read(run)]

    async def devices(self, tenant_id: int, *, after_id: int | None = None, limit: int = 100) -> list[Device]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?",
                (tenant_id, after_id or 0, limit),
            ).fetchall()
        )
        return [_device(row) for row in rows]

    async def set_device_token(self, *, imei: str, token_hash: bytes, audit: AuditEntry | None = None) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if c.execute("UPDATE devices SET token_hash = ? WHERE imei = ?", (token_hash, imei)).rowcount == 0:
                return False
            insert_audit(c, audit)
            return True

        return await self._write(run)

    async def update_device(
        self,
        device_id: int,
        *,
        name: str | None = None,
        enabled: bool | None = None,
        audit: AuditEntry | None = None,
    ) -> Device | None:
        def run(c: sqlite3.Connection) -> Device | None:
            c.execute(
                "UPDATE devices SET name = coalesce(?, name), enabled = coalesce(?, enabled) WHERE id = ?",
                (name, None if enabled is None else int(enabled), device_id),
            )
            device = _device_or_none(
                c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?", (device_id,)).fetchone()
            )
            if device is not None:
                insert_audit(c, audit)
            return device

        return await self._write(run)

    async def retire_device(self, device_id: int, *, erase: bool = False, audit: AuditEntry | None = None) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT imei, tenant_id FROM devices WHERE id = ?", (device_id,)).fetchone()
            if row is None:
                return False
            # Its settings name the device by id and nothing else reaches them: they go either way.
            c.execute("DELETE FROM device_settings WHERE device_id = ?", (device_id,))
            c.execute("DELETE FROM devices WHERE id = ?", (device_id,))
            if erase:
                _erase_records(c, device_id, imei=row[0], tenant_id=row[1])
            insert_audit(c, audit)
            return True

        return await self._write(run)

    async def device_by_imei(self, imei: str) -> Device | None:
        return await self._read(
            lambda c: _device_or_none(
                c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE imei = ?", (imei,)).fetchone()
            )
        )

    # -- downlink commands ---------------------------------------------------------------

    async def enqueue_command(
        self,
        *,
        device_id: int,
        cmd: int,
        args: bytes = b"",
        ttl_s: float | None = None,
        audit: AuditEntry | None = None,
    ) -> int:
        def run(c: sqlite3.Connection) -> int:
            now = time.time()
            cursor = c.execute(
                "INSERT INTO commands(device_id, cmd, args, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (device_id, cmd, args, now, None if ttl_s is None else now + ttl_s),
            )
            command_id = int(cursor.lastrowid or 0)
            insert_audit(c, None if audit is None else replace(audit, detail={**audit.detail, "id": command_id}))
            return command_id

        return await self._write(run)

    async def device_commands(
        self, device_id: int, *, before_id: int | None = None, limit: int = 100
    ) -> list[CommandRecord]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {COMMAND_COLUMNS} FROM commands c JOIN devices d ON d.id = c.device_id"
                " WHERE c.device_id = ? AND c.id < ? ORDER BY c.id DESC LIMIT ?",
                (device_id, before_id or 2**63 - 1, limit),
            ).fetchall()
        )
        return [CommandRecord(*row) for row in rows]

    async def commands_to_send(
        self,
        device_ids: Sequence[int] | None = None,
        *,
        include_unanswered: bool = False,
    ) -> list[CommandRecord]:
        # A pending command past its expiry is never sent; one already sent goes again until answered.
        # The first term is the commands_open index's own condition, so SQLite can use that index.
        unanswered = " OR c.status = 'sent'" if include_unanswered else ""
        sql = (
            f"SELECT {COMMAND_COLUMNS} FROM commands c JOIN devices d ON d.id = c.device_id"
            " WHERE c.status IN ('pending', 'sent')"
            f" AND (c.status = 'pending' AND (c.expires_at IS NULL OR c.expires_at > ?){unanswered})"
        )
        params: tuple[Any, ...] = (time.time(),)
        if device_ids is not None:
            sql += f" AND c.device_id IN ({','.join('?' * len(device_ids))})"
            params += tuple(device_ids)
        rows = await self._read(lambda c: c.execute(sql + " ORDER BY c.id", params).fetchall())
        return [CommandRecord(*row) for row in rows]

    async def mark_command_sent(self, command_id: int, seq: int) -> bool:
        # Checked again here: a command that expired since it was read is not sent at all.
        now = time.time()
        cursor = await self._write(
            lambda c: c.execute(
                "UPDATE commands SET status = 'sent', seq = ?, sent_at = ?"
                " WHERE id = ? AND (status = 'sent' OR status = 'pending' AND (expires_at IS NULL OR expires_at > ?))",
                (seq, now, command_id, now),
            )
        )
        return bool(cursor.rowcount)

    async def command(self, command_id: int) -> CommandRecord | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {COMMAND_COLUMNS} FROM commands c JOIN devices d ON d.id = c.device_id WHERE c.id = ?",
                (command_id,),
            ).fetchone()
        )
        return CommandRecord(*row) if row else None


def _erase_records(c: sqlite3.Connection, device_id: int, *, imei: str, tenant_id: int) -> None:
    """Delete everything stored about a device (within the retirement's transaction)."""
    alert_ids = [row[0] for row in c.execute("SELECT id FROM alerts WHERE device_id = ?", (device_id,))]
    for start in range(0, len(alert_ids), 500):  # SQLite caps the parameters of one statement
        chunk = alert_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for table in _ERASE_BY_ALERT:
            c.execute(f"DELETE FROM {table} WHERE alert_id IN ({marks})", chunk)
        c.execute(f"DELETE FROM alerts WHERE id IN ({marks})", chunk)
    for table in _ERASE_BY_DEVICE:
        c.execute(f"DELETE FROM {table} WHERE device_id = ?", (device_id,))
    erase_device_webhook_positions(c, device_id, tenant_id=tenant_id, imei=imei)
    erase_device_webhook_deliveries(c, tenant_id=tenant_id, imei=imei)
    _erase_from_outbox(c, device_id, imei)
    # Geofences name their devices by IMEI: after an erasure only the audit log may still name it.
    for geofence_id, devices in c.execute(
        "SELECT id, devices FROM geofences WHERE tenant_id = ?", (tenant_id,)
    ).fetchall():
        named = orjson.loads(devices)
        if imei in named:
            kept = [other for other in named if other != imei]
            c.execute("UPDATE geofences SET devices = ? WHERE id = ?", (orjson.dumps(kept).decode(), geofence_id))


def _erase_from_outbox(c: sqlite3.Connection, device_id: int, imei: str) -> None:
    """Messages not relayed yet: those about the device go, telemetry loses the device's rows."""
    for entry_id, topic, payload in c.execute(
        "SELECT id, topic, payload FROM outbox WHERE instr(payload, ?) > 0", (imei.encode(),)
    ).fetchall():
        message = message_without_device(topic, bytes(payload), device_id, imei)
        if message is None:
            c.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))
        elif message != payload:
            c.execute("UPDATE outbox SET payload = ? WHERE id = ?", (message, entry_id))

"""SQLite adapter, devices and their downlink commands (a mixin of SqliteStore).

The telemetry commit (sqlite.py) updates a device's state columns (last
seen, battery, last fix) and the commands its frames answer.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from shared.store.devices import CommandRecord, Device, DeviceExists

T = TypeVar("T")

_DEVICE_COLUMNS = (
    "id, tenant_id, imei, name, token_hash, enabled, created_at, last_seen, battery,"
    " last_fix_ts, last_lat_e7, last_lon_e7"
)
_COMMAND_COLUMNS = "c.id, c.device_id, d.imei, c.cmd, c.args, c.status, c.seq"


def _device(row: tuple[Any, ...]) -> Device:
    values = list(row)
    values[5] = bool(values[5])
    return Device(*values)


def _device_or_none(row: tuple[Any, ...] | None) -> Device | None:
    return None if row is None else _device(row)


class SqliteDevices:
    SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    imei TEXT NOT NULL UNIQUE, name TEXT NOT NULL, token_hash BLOB NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL,
    last_seen REAL, battery INTEGER, last_fix_ts INTEGER, last_lat_e7 INTEGER, last_lon_e7 INTEGER,
    battery_ts INTEGER);
CREATE INDEX IF NOT EXISTS devices_by_tenant ON devices(tenant_id);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL, cmd INTEGER NOT NULL,
    args BLOB NOT NULL, status TEXT NOT NULL DEFAULT 'pending', seq INTEGER,
    created_at REAL NOT NULL, sent_at REAL, result_at REAL);
CREATE INDEX IF NOT EXISTS commands_open ON commands(status, device_id) WHERE status IN ('pending', 'sent');
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    # -- devices -------------------------------------------------------------------------

    async def add_device(self, *, tenant_id: int, imei: str, name: str, token_hash: bytes) -> Device:
        def run(c: sqlite3.Connection) -> Device:
            try:
                c.execute(
                    "INSERT INTO devices(tenant_id, imei, name, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                    (tenant_id, imei, name, token_hash, time.time()),
                )
            except sqlite3.IntegrityError as exc:
                raise DeviceExists(imei) from exc
            return _device(c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE imei = ?", (imei,)).fetchone())

        return await self._write(run)

    async def device(self, device_id: int) -> Device | None:
        return await self._read(
            lambda c: _device_or_none(
                c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?", (device_id,)).fetchone()
            )
        )

    async def devices(self, tenant_id: int, *, after_id: int | None = None, limit: int = 100) -> list[Device]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?",
                (tenant_id, after_id or 0, limit),
            ).fetchall()
        )
        return [_device(row) for row in rows]

    async def set_device_token(self, *, imei: str, token_hash: bytes) -> None:
        await self._write(lambda c: c.execute("UPDATE devices SET token_hash = ? WHERE imei = ?", (token_hash, imei)))

    async def device_by_imei(self, imei: str) -> Device | None:
        return await self._read(
            lambda c: _device_or_none(
                c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE imei = ?", (imei,)).fetchone()
            )
        )

    # -- downlink commands ---------------------------------------------------------------

    async def enqueue_command(self, *, device_id: int, cmd: int, args: bytes = b"") -> int:
        def run(c: sqlite3.Connection) -> int:
            cursor = c.execute(
                "INSERT INTO commands(device_id, cmd, args, created_at) VALUES (?, ?, ?, ?)",
                (device_id, cmd, args, time.time()),
            )
            return int(cursor.lastrowid or 0)

        return await self._write(run)

    async def commands_to_send(
        self,
        device_ids: Sequence[int] | None = None,
        *,
        include_unanswered: bool = False,
    ) -> list[CommandRecord]:
        statuses = "'pending', 'sent'" if include_unanswered else "'pending'"
        sql = (
            f"SELECT {_COMMAND_COLUMNS} FROM commands c"
            f" JOIN devices d ON d.id = c.device_id WHERE c.status IN ({statuses})"
        )
        params: tuple[Any, ...] = ()
        if device_ids is not None:
            sql += f" AND c.device_id IN ({','.join('?' * len(device_ids))})"
            params = tuple(device_ids)
        rows = await self._read(lambda c: c.execute(sql + " ORDER BY c.id", params).fetchall())
        return [CommandRecord(*row) for row in rows]

    async def mark_command_sent(self, command_id: int, seq: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE commands SET status = 'sent', seq = ?, sent_at = ?"
                " WHERE id = ? AND status IN ('pending', 'sent')",
                (seq, time.time(), command_id),
            )
        )

    async def command(self, command_id: int) -> CommandRecord | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_COMMAND_COLUMNS} FROM commands c JOIN devices d ON d.id = c.device_id WHERE c.id = ?",
                (command_id,),
            ).fetchone()
        )
        return CommandRecord(*row) if row else None

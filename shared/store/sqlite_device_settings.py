"""SQLite adapter, per-device detection settings (a mixin of SqliteStore)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import orjson

from shared.store.audit import AuditEntry
from shared.store.device_settings import DeviceSettings
from shared.store.sqlite_audit import insert_audit

T = TypeVar("T")


class SqliteDeviceSettings:
    SCHEMA = """
CREATE TABLE IF NOT EXISTS device_settings (
    device_id INTEGER PRIMARY KEY REFERENCES devices(id), settings BLOB NOT NULL);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def device_settings(self, device_id: int) -> DeviceSettings:
        row = await self._read(
            lambda c: c.execute("SELECT settings FROM device_settings WHERE device_id = ?", (device_id,)).fetchone()
        )
        return DeviceSettings(**orjson.loads(row[0])) if row else DeviceSettings()

    async def set_device_settings(
        self, device_id: int, settings: DeviceSettings, *, audit: AuditEntry | None = None
    ) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO device_settings(device_id, settings) VALUES (?, ?)"
                " ON CONFLICT(device_id) DO UPDATE SET settings = excluded.settings",
                (device_id, orjson.dumps(settings.as_dict())),
            )
            insert_audit(c, audit)

        await self._write(run)

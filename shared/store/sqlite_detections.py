"""SQLite adapter, detected alerts (a mixin of SqliteStore): one active alert per detection key."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from shared.store.alerts import Alert
from shared.store.detections import SYSTEM_ACTOR, DetectedCondition
from shared.store.sqlite_alerts import _alert_by_id, _record_change

T = TypeVar("T")


class SqliteDetections:
    SCHEMA = """
-- The active alert of each detected condition; the row goes when the condition clears.
CREATE TABLE IF NOT EXISTS detections (
    key TEXT PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id));
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def raise_detected_alert(self, condition: DetectedCondition) -> tuple[Alert, bool]:
        def run(c: sqlite3.Connection) -> tuple[Alert, bool]:
            row = c.execute("SELECT alert_id FROM detections WHERE key = ?", (condition.key,)).fetchone()
            if row is not None:
                active = _alert_by_id(c, row[0])
                if active.status != "resolved":
                    return active, False
                c.execute("DELETE FROM detections WHERE key = ?", (condition.key,))  # resolved by a person
            now = time.time()
            cursor = c.execute(
                "INSERT INTO alerts(tenant_id, device_id, imei, kind, ts, lat, lon, battery, status, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,'open',?)",
                (
                    condition.tenant_id,
                    condition.device_id,
                    condition.imei,
                    condition.kind,
                    condition.ts,
                    condition.lat,
                    condition.lon,
                    condition.battery,
                    now,
                ),
            )
            alert = _alert_by_id(c, int(cursor.lastrowid or 0))
            c.execute("INSERT INTO detections(key, alert_id) VALUES (?, ?)", (condition.key, alert.id))
            _record_change(
                c,
                alert,
                "created",
                action="raised",
                actor=SYSTEM_ACTOR,
                now=now,
                detail={"kind": alert.kind, "detected": condition.key, **(condition.detail or {})},
            )
            return alert, True

        return await self._write(run)

    async def clear_detected_alert(self, key: str, *, note: str) -> Alert | None:
        def run(c: sqlite3.Connection) -> Alert | None:
            row = c.execute("SELECT alert_id FROM detections WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            c.execute("DELETE FROM detections WHERE key = ?", (key,))
            alert = _alert_by_id(c, row[0])
            if alert.status == "resolved":
                return alert
            now = time.time()
            c.execute(
                "UPDATE alerts SET status = 'resolved', resolved_at = ?, resolved_by = ?, resolution_note = ?"
                " WHERE id = ?",
                (now, SYSTEM_ACTOR, note, alert.id),
            )
            alert = _alert_by_id(c, alert.id)
            _record_change(c, alert, "resolved", action="resolved", actor=SYSTEM_ACTOR, now=now, detail={"note": note})
            return alert

        return await self._write(run)

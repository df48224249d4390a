"""SQLite adapter, SMS reply codes and answered inbound messages (a mixin of SqliteStore)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from shared.store.sms_replies import INBOUND_KEPT_S, ReplyCode, new_reply_code

T = TypeVar("T")


class SqliteSmsReplies:
    SCHEMA = """
CREATE TABLE IF NOT EXISTS sms_reply_codes (
    phone TEXT NOT NULL, alert_id INTEGER NOT NULL, code TEXT NOT NULL, tenant_id INTEGER NOT NULL,
    contact_id INTEGER NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (phone, alert_id), UNIQUE (phone, code));
CREATE TABLE IF NOT EXISTS sms_inbound (
    message_sid TEXT PRIMARY KEY, answer TEXT NOT NULL, received_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sms_inbound_by_time ON sms_inbound(received_at);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def issue_reply_code(self, *, tenant_id: int, alert_id: int, contact_id: int, phone: str) -> str:
        def run(c: sqlite3.Connection) -> str:  # one writer thread: no other issue runs in between
            row = c.execute(
                "SELECT code FROM sms_reply_codes WHERE phone = ? AND alert_id = ?", (phone, alert_id)
            ).fetchone()
            if row is not None:
                return str(row[0])
            # Resolved alerts give their codes back (and a reply to one then matches nothing).
            c.execute(
                "DELETE FROM sms_reply_codes WHERE phone = ? AND alert_id IN"
                " (SELECT id FROM alerts WHERE status = 'resolved')",
                (phone,),
            )
            used = {code for (code,) in c.execute("SELECT code FROM sms_reply_codes WHERE phone = ?", (phone,))}
            code = new_reply_code(used)
            c.execute(
                "INSERT INTO sms_reply_codes(phone, alert_id, code, tenant_id, contact_id, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (phone, alert_id, code, tenant_id, contact_id, time.time()),
            )
            return code

        return await self._write(run)

    async def reply_codes(self, phone: str) -> list[ReplyCode]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT r.phone, r.code, r.tenant_id, r.alert_id, r.contact_id FROM sms_reply_codes r"
                " JOIN alerts a ON a.id = r.alert_id AND a.tenant_id = r.tenant_id"
                " WHERE r.phone = ? AND a.status != 'resolved' ORDER BY r.alert_id",
                (phone,),
            ).fetchall()
        )
        return [ReplyCode(*row) for row in rows]

    async def inbound_sms_answer(self, message_sid: str) -> str | None:
        row = await self._read(
            lambda c: c.execute("SELECT answer FROM sms_inbound WHERE message_sid = ?", (message_sid,)).fetchone()
        )
        return str(row[0]) if row else None

    async def remember_inbound_sms(self, message_sid: str, answer: str) -> None:
        def run(c: sqlite3.Connection) -> None:
            now = time.time()
            c.execute("DELETE FROM sms_inbound WHERE received_at < ?", (now - INBOUND_KEPT_S,))
            c.execute(
                "INSERT OR IGNORE INTO sms_inbound(message_sid, answer, received_at) VALUES (?,?,?)",
                (message_sid, answer, now),
            )

        await self._write(run)

"""The embedded store: SQLite in WAL mode, one writer thread, one reader thread.

Writes go through a single thread (SQLite has one writer at a time anyway), so
a whole group of frames from many connections commits in one transaction.
Reads use their own connection and never wait for a write, thanks to WAL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter
from pathlib import Path
from typing import TypeVar

from shared.protocols.xsole import CommandResult, FrameType
from shared.protocols.xsole.validation import alarm_time
from shared.store.batch import DeviceAlarm, IngestBatch
from shared.store.devices import CommandRecord
from shared.store.messages import (
    TOPIC_ALARM,
    TOPIC_TELEMETRY,
    alarm_message,
    telemetry_message,
)
from shared.store.port import StoreUnavailable
from shared.store.sqlite_accounts import SqliteAccounts
from shared.store.sqlite_alerting import SqliteAlerting
from shared.store.sqlite_audit import SqliteAudit
from shared.store.sqlite_detection_config import SqliteDetectionConfig
from shared.store.sqlite_devices import COMMAND_COLUMNS, SqliteDevices
from shared.store.sqlite_outbox import SqliteOutbox
from shared.store.sqlite_reports import SqliteReports
from shared.store.sqlite_retention import SqliteRetention
from shared.store.sqlite_runs import (
    RunPlan,
    SqliteRuns,
    Statement,
    plan_runs,
    run_statements,
    statements,
    store_runs,
    stored_runs,
)
from shared.store.sqlite_tenant_settings import SqliteTenantSettings
from shared.store.sqlite_webhook_positions import SqliteWebhookPositions
from shared.store.sqlite_webhooks import SqliteWebhooks, owe_event
from shared.webhook_events import command_completed_event

T = TypeVar("T")

# The table of the telemetry commit below; its frames are kept in frame_runs (sqlite_runs.py).
SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL, device_ts INTEGER NOT NULL,
    seq INTEGER NOT NULL, ts INTEGER NOT NULL, kind INTEGER NOT NULL,
    lat_e7 INTEGER NOT NULL, lon_e7 INTEGER NOT NULL, battery INTEGER NOT NULL,
    flags INTEGER NOT NULL, received_at REAL NOT NULL, UNIQUE (device_id, device_ts, seq));
"""
# One mixin per port, in the order their tables are created (tenants first: the others refer to them).
_PORTS = (
    SqliteAccounts,
    SqliteDevices,
    SqliteRuns,
    SqliteOutbox,
    SqliteAlerting,
    SqliteDetectionConfig,
    SqliteAudit,
    SqliteWebhooks,
    SqliteWebhookPositions,
    SqliteTenantSettings,
    SqliteReports,
)

_COMMAND_STATUS = {0: "done", 1: "failed", 2: "unsupported"}
_CMD_SEQ_AND_STATUS = itemgetter(CommandResult._fields.index("cmd_seq"), CommandResult._fields.index("status"))


class SqliteStore(
    SqliteAccounts,
    SqliteDevices,
    SqliteRuns,
    SqliteOutbox,
    SqliteAlerting,
    SqliteDetectionConfig,
    SqliteAudit,
    SqliteWebhooks,
    SqliteWebhookPositions,
    SqliteTenantSettings,
    SqliteReports,
    SqliteRetention,
):
    """Every storage port on SQLite (WAL), one mixin per port over the same connections and
    threads; the telemetry commit is here, its reads in SqliteRuns. All blocking calls run
    off the event loop.
    """

    def __init__(self, path: Path, *, synchronous: str = "FULL"):
        self.path = path
        self._synchronous = synchronous
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._reader_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        # Called on the event loop after every committed write, so the outbox
        # relay can move what it wrote without waiting for its next poll.
        self.on_write: Callable[[], None] | None = None

    # -- plumbing ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # Room in the statement cache for every size of every batch statement (see padded_batches).
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30, cached_statements=256
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        # A commit of a few thousand frames from a thousand devices touches a
        # thousand pages, so the default checkpoint every 1,000 WAL pages ran at
        # every commit and wrote each page twice. Every 16,000 pages (64 MB) a
        # hot page is copied to the database once for several commits; the WAL
        # file is cut back to 64 MB after each checkpoint.
        conn.execute("PRAGMA wal_autocheckpoint=16000")
        conn.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._writer is not None, "store is not open"
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                result = fn(self._writer)
                self._writer.execute("COMMIT")
                return result
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise

        try:
            result = await asyncio.get_running_loop().run_in_executor(self._writer_thread, run)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if self.on_write is not None:
            self.on_write()
        return result

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._reader is not None, "store is not open"
            return fn(self._reader)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader_thread, run)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(self._writer_thread, self._connect)
        schema = "".join(part.SCHEMA for part in _PORTS) + SCHEMA
        await loop.run_in_executor(self._writer_thread, self._writer.executescript, schema)
        await loop.run_in_executor(self._writer_thread, self._load_newest_stored, self._writer)
        self._reader = await loop.run_in_executor(self._reader_thread, self._connect)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._writer is not None:
            await loop.run_in_executor(self._writer_thread, self._writer.close)
            self._writer = None
        if self._reader is not None:
            await loop.run_in_executor(self._reader_thread, self._reader.close)
            self._reader = None
        self._writer_thread.shutdown(wait=True)
        self._reader_thread.shutdown(wait=True)

    async def ping(self) -> None:
        if self._reader is None:
            raise StoreUnavailable("store is not open")
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    # -- telemetry -------------------------------------------------------------------

    async def commit_telemetry(self, batch: IngestBatch) -> None:
        # The Python half (runs, device states, the message) runs here, on the
        # event loop, which holds the GIL anyway: on the writer thread it had to
        # win the GIL from the busy loop again and again, which stretched every
        # commit, and each device waits for its commit to be ACKed.
        plan = plan_runs(stored_runs(batch), self._newest_stored)
        updates, message, answers = _device_updates(batch), telemetry_message(batch), _command_answers(batch)
        await self._write(lambda c: _commit_telemetry(c, batch.alarms, answers, plan, updates, message))


def _command_answers(batch: IngestBatch) -> list[tuple[int, tuple[int, int]]]:
    """(device id, (the command's seq, its status)) per command result of the batch."""
    results = batch.tables.get(FrameType.COMMAND_RESULT)
    if results is None:
        return []
    return list(zip(results.device_ids, map(_CMD_SEQ_AND_STATUS, results.fields), strict=True))


def _commit_telemetry(
    c: sqlite3.Connection,
    alarms: tuple[DeviceAlarm, ...],
    command_results: list[tuple[int, tuple[int, int]]],
    plan: RunPlan,
    device_updates: list[Statement],
    message: bytes | None,
) -> None:
    """The body of one ingest transaction (runs on the writer thread)."""
    store_runs(c, plan)
    now = time.time()
    for alarm in alarms:
        _insert_alarm(c, alarm, now)
    for device_id, (cmd_seq, status) in command_results:
        _record_command_result(c, device_id, cmd_seq, _COMMAND_STATUS.get(status, "failed"), now)
    run_statements(c, device_updates)
    if message is not None:
        c.execute("INSERT INTO outbox(topic, payload, created_at) VALUES (?, ?, ?)", (TOPIC_TELEMETRY, message, now))


def _record_command_result(c: sqlite3.Connection, device_id: int, cmd_seq: int, status: str, now: float) -> None:
    """A device's answer to a command it was sent, and the `command.completed` event owed with it."""
    answered = c.execute(
        "UPDATE commands SET status = ?, result_at = ? WHERE device_id = ? AND seq = ? AND status = 'sent'"
        " RETURNING id",
        (status, now, device_id, cmd_seq),
    ).fetchall()
    for (command_id,) in answered:
        row = c.execute(
            f"SELECT d.tenant_id, {COMMAND_COLUMNS} FROM commands c JOIN devices d ON d.id = c.device_id"
            " WHERE c.id = ?",
            (command_id,),
        ).fetchone()
        owe_event(c, command_completed_event(row[0], CommandRecord(*row[1:]), now), now)


def _insert_alarm(c: sqlite3.Connection, alarm: DeviceAlarm, now: float) -> None:
    device, event, received_at = alarm
    # A clock far ahead or years behind (ts 0) would misdate the alarm and its
    # alert; the server's receive time stands in, the device's own ts stays the key.
    ts = alarm_time(event.ts, received_at)
    cursor = c.execute(
        "INSERT OR IGNORE INTO alarms(device_id, device_ts, seq, ts, kind, lat_e7, lon_e7, battery, flags,"
        " received_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            device.id,
            event.ts,
            event.seq,
            ts,
            event.kind,
            event.lat_e7,
            event.lon_e7,
            event.battery,
            event.flags,
            received_at,
        ),
    )
    if cursor.rowcount == 1:  # a retransmission inserts nothing and raises nothing new
        c.execute(
            "INSERT INTO outbox(topic, payload, created_at) VALUES (?, ?, ?)",
            (TOPIC_ALARM, alarm_message(alarm, int(cursor.lastrowid or 0), ts), now),
        )


# One statement for a whole commit's devices (see padded_batches); a padding row's
# NULL id matches no device. SET expressions all see the row as it was, so each
# CASE can compare with the stored timestamps.
_NEWER_BATTERY = "v.battery_ts IS NOT NULL AND (devices.battery_ts IS NULL OR devices.battery_ts <= v.battery_ts)"
_NEWER_FIX = "v.fix_ts IS NOT NULL AND (devices.last_fix_ts IS NULL OR devices.last_fix_ts < v.fix_ts)"
_DEVICE_UPDATE = (
    "WITH v(id, seen, battery, battery_ts, fix_ts, lat, lon) AS (VALUES {values}) "
    "UPDATE devices SET last_seen = max(coalesce(devices.last_seen, 0), v.seen),"
    f" battery = CASE WHEN {_NEWER_BATTERY} THEN v.battery ELSE devices.battery END,"
    f" battery_ts = CASE WHEN {_NEWER_BATTERY} THEN v.battery_ts ELSE devices.battery_ts END,"
    f" last_fix_ts = CASE WHEN {_NEWER_FIX} THEN v.fix_ts ELSE devices.last_fix_ts END,"
    f" last_lat_e7 = CASE WHEN {_NEWER_FIX} THEN v.lat ELSE devices.last_lat_e7 END,"
    f" last_lon_e7 = CASE WHEN {_NEWER_FIX} THEN v.lon ELSE devices.last_lon_e7 END"
    " FROM v WHERE devices.id = v.id"
)


def _device_updates(batch: IngestBatch) -> list[Statement]:
    """The statements updating the commit's devices."""
    return statements(
        _DEVICE_UPDATE,
        7,
        [
            (device_id, seen, *((battery[1], battery[0]) if battery else (None, None)), *(fix if fix else (None,) * 3))
            for device_id, (seen, battery, fix) in batch.readings.items()
        ],
    )

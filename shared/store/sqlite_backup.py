"""Copies of the embedded store's database file: taken while it is in use, checked, put back.

The copy is SQLite's online backup (`sqlite3.Connection.backup`), read through
a connection of its own, in steps of a few pages with a pause between them so
the copy takes its share of the disk, not all of it. The backup API restarts
from the first page whenever another process commits between two steps, and a
running `solewatch run` commits every few milliseconds: a plain stepped backup
of a busy store never ends. So the whole copy runs inside one read
transaction. In WAL mode a reader never blocks the writer; the copy is the
database as it was when that transaction began, and meanwhile the checkpoints
cannot pass that point, so the WAL file grows for as long as the copy runs.

The copy is turned into a plain rollback-journal file: one self-contained
file, readable from read-only media; the store turns WAL back on when it opens.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.store.audit import AuditEntry
from shared.store.sqlite_audit import insert_audit

# Tables every solewatch store has had since its first version; a file without
# them is some other SQLite database.
STORE_TABLES = frozenset({"tenants", "users", "devices", "frame_runs", "alarms", "audit"})
# SQLite's companion files of a database in WAL mode.
WAL_SUFFIXES = ("-wal", "-shm")
# 1,024 pages of 4 KiB (the default page size) are 4 MiB a step.
STEP_PAGES = 1024
STEP_PAUSE_S = 0.002

# (pages copied, pages in all) after each step.
Progress = Callable[[int, int], None]
# The audit entry of a backup or restore for one tenant, given its id: each tenant's log tells its admins.
EntryFor = Callable[[int], AuditEntry]


class BackupFileError(Exception):
    """A database file cannot be copied or is not a usable solewatch store; the message says why."""


@dataclass(frozen=True, slots=True)
class CopyReport:
    pages: int
    page_size: int
    bytes: int
    steps: int
    seconds: float


def copy_online(
    source: Path,
    target: Path,
    *,
    progress: Progress | None = None,
    step_pages: int = STEP_PAGES,
    pause_s: float = STEP_PAUSE_S,
) -> CopyReport:
    """Copy the database at `source` (possibly in use by another process) into a new file `target`.

    `target` must be absent or empty; on failure it is removed. Nothing at `source` is written.
    """
    started = time.monotonic()
    steps = 0
    pages = 0

    def stepped(_status: int, remaining: int, total: int) -> None:
        nonlocal steps, pages
        steps += 1
        pages = total
        if progress is not None:
            progress(total - remaining, total)

    reader = open_read_only(source)
    try:
        copy = sqlite3.connect(target, isolation_level=None)
        try:
            # One snapshot for every step (see the module's docstring); the
            # read below is what starts it, BEGIN alone takes no lock.
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
            reader.backup(copy, pages=step_pages, progress=stepped, sleep=pause_s)
            reader.execute("COMMIT")
            copy.execute("PRAGMA journal_mode=DELETE")
            page_size = int(copy.execute("PRAGMA page_size").fetchone()[0])
            pages = int(copy.execute("PRAGMA page_count").fetchone()[0])
        finally:
            copy.close()
        fsync_file(target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        reader.close()
    return CopyReport(pages, page_size, target.stat().st_size, steps, time.monotonic() - started)


def record_for_each_tenant(conn: sqlite3.Connection, entry_for: EntryFor) -> int:
    """Append `entry_for(tenant)` to every tenant's audit log in one transaction; returns how many."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        tenants = [tenant_id for (tenant_id,) in conn.execute("SELECT id FROM tenants ORDER BY id").fetchall()]
        for tenant_id in tenants:
            insert_audit(conn, entry_for(tenant_id))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(tenants)


def record_in_store(store: Path, entry_for: EntryFor) -> int:
    """`record_for_each_tenant` in the live store, waiting a while for its writer (a group commit is short)."""
    conn = sqlite3.connect(f"{store.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None, timeout=10)
    try:
        return record_for_each_tenant(conn, entry_for)
    finally:
        conn.close()


def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that can neither create nor change the file (the WAL index may still be written)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)


@dataclass(frozen=True, slots=True)
class StoreFileSummary:
    tables: int
    tenants: int
    devices: int
    bytes: int


def check_store_file(path: Path) -> StoreFileSummary:
    """Raise BackupFileError unless `path` is a whole, uncorrupted solewatch store."""
    if not path.exists():
        raise BackupFileError(f"{path} does not exist")
    if not path.is_file():
        raise BackupFileError(f"{path} is not a file")
    try:
        conn = open_read_only(path)
    except sqlite3.Error as exc:
        raise BackupFileError(f"{path} cannot be opened as a SQLite database: {exc}") from exc
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = STORE_TABLES - tables
        if missing:
            raise BackupFileError(
                f"{path} is a SQLite database but not a solewatch store (no table {', '.join(sorted(missing))})"
            )
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(5)")]
        if problems != ["ok"]:
            raise BackupFileError(f"{path} is damaged (SQLite's integrity check: {'; '.join(problems)})")
        tenants = conn.execute("SELECT count(*) FROM tenants").fetchone()[0]
        devices = conn.execute("SELECT count(*) FROM devices").fetchone()[0]
    except sqlite3.DatabaseError as exc:  # "file is not a database", a truncated file...
        raise BackupFileError(f"{path} is not a SQLite database ({exc})") from exc
    finally:
        conn.close()
    return StoreFileSummary(len(tables), tenants, devices, path.stat().st_size)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    """Make renames and removals in the directory durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

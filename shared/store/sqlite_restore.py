"""Putting a checked copy of the embedded store in place of the data directory's database.

The copy is written beside the store, made durable, then renamed over it: at
every moment the store's name holds either the old database or the whole new
one. What the old database's WAL still held is checkpointed into it first, so
the replaced file kept aside is complete on its own, and a stale WAL can never
be applied to the new file.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from shared.store.sqlite_backup import (
    WAL_SUFFIXES,
    EntryFor,
    Progress,
    copy_online,
    fsync_directory,
    fsync_file,
    record_for_each_tenant,
)


class StoreInUse(Exception):
    """Another process has the store open."""


def check_not_in_use(store: Path) -> None:
    """Raise StoreInUse when any other process has the database open.

    A connection in WAL mode keeps a shared lock for as long as it is open, so
    SQLite's exclusive locking mode is refused while any other connection
    exists, even an idle one: this catches every process on the file (the
    distributed mode's services on SQLite, a `solewatch devices add`), not only
    `solewatch run`, which the data directory's lock already shows.
    """
    if not store.exists():
        return
    try:
        conn = sqlite3.connect(store, isolation_level=None, timeout=0)
    except sqlite3.Error:
        return  # not a database we can open: nobody else can use it either
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreInUse(f"{store} is open in another process") from None
    except sqlite3.DatabaseError:
        pass  # damaged: it will be set aside as it is
    finally:
        conn.close()


def install_store(
    backup: Path, store: Path, *, entry_for: EntryFor, aside: Path | None, progress: Progress | None = None
) -> None:
    """Replace `store` (and its WAL files) by a copy of `backup`, with `entry_for(tenant)` in each tenant's log.

    The old database goes to the directory `aside` (created) when given, else it
    is deleted. The caller has checked `backup` and holds the data directory's lock.
    """
    incoming = store.with_name(f".{store.name}.restoring")
    incoming.unlink(missing_ok=True)  # left by a restore that was interrupted
    try:
        _copy_with_entries(backup, incoming, entry_for, progress)
        if store.exists():
            _fold_wal(store)
            if aside is not None:
                aside.mkdir(parents=True)
                os.link(store, aside / store.name)  # the old content stays there once the rename below replaces it
            for suffix in WAL_SUFFIXES:
                companion = store.with_name(store.name + suffix)
                if companion.exists():
                    if aside is not None:
                        companion.rename(aside / companion.name)
                    else:
                        companion.unlink()
        incoming.rename(store)
    except BaseException:
        incoming.unlink(missing_ok=True)
        raise
    fsync_directory(store.parent)


def _copy_with_entries(backup: Path, incoming: Path, entry_for: EntryFor, progress: Progress | None) -> None:
    """Copy through SQLite (not byte by byte), so a backup left in WAL mode beside its WAL comes whole."""
    copy_online(backup, incoming, progress=progress, pause_s=0)
    copy = sqlite3.connect(incoming, isolation_level=None)
    try:
        record_for_each_tenant(copy, entry_for)
    finally:
        copy.close()
    fsync_file(incoming)


def _fold_wal(store: Path) -> None:
    """Fold the WAL into the database file and leave WAL mode, so the replaced file is whole and plain
    like a backup (and can be restored as one); a store too damaged to open is set aside as it is."""
    try:
        conn = sqlite3.connect(store, isolation_level=None, timeout=5)
        try:
            conn.execute("PRAGMA journal_mode=DELETE").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        pass

"""`solewatch backup PATH` and `solewatch restore PATH`: the embedded store's data directory, copied and put back.

What a data directory holds, and what a backup does with it:

- `solewatch.db` (with `-wal` and `-shm` while in use): the store. Everything
  the server needs is in it: tenants, users, API keys, devices and their
  secrets, telemetry, alerts, the audit log, the generated VAPID key. Copied.
- `authn-state.db`: sessions, refresh tokens, logouts and login throttling.
  Left out: once the store goes back in time, a session kept across the
  restore could name a user id the restored store gives to someone else.
  A restore sets it aside, so everyone signs in again.
- `jwt-secret`: the key signing access tokens, generated when
  SOLEWATCH_JWT_SECRET is not set (development). Left out: whoever reads a
  backup holding it could sign tokens the live server accepts. A restore sets
  it aside too; a new one is generated at start, so no token issued before
  the restore is accepted after it.
- `solewatch.lock`: who runs on this data directory now. Never copied.

A backup is one file (a plain SQLite database, mode 0600), written beside its
name and renamed into place once whole, so a backup cut short leaves no file
that looks like a backup.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.authn.state import STATE_FILE
from services.authn.tokens import SECRET_FILE
from services.startup import LOCK_FILE, StartupError, lock_data_dir
from shared.config import Settings
from shared.store.audit import Actor, AuditEntry
from shared.store.sqlite_backup import (
    WAL_SUFFIXES,
    BackupFileError,
    check_store_file,
    copy_online,
    fsync_directory,
    record_in_store,
)
from shared.store.sqlite_restore import StoreInUse, check_not_in_use, install_store

PROGRESS_EVERY_S = 1.0
# A restore says it is checking the backup when the check will take seconds (about 30 s a GB).
ANNOUNCE_CHECK_BYTES = 64 * 1024 * 1024
MONGODB_ADVICE = (
    "SOLEWATCH_MONGODB_URL is set, so this deployment keeps its data in MongoDB, not in the data directory; "
    "use mongodump and mongorestore (docs/operations.md)"
)


class BackupRefused(Exception):
    """Why a backup or restore was not done, as one sentence for the operator."""


@dataclass(frozen=True, slots=True)
class DataDirectory:
    """The files of an all-in-one data directory, by what they are."""

    root: Path
    store: Path

    @classmethod
    def of(cls, settings: Settings) -> DataDirectory:
        return cls(settings.data_dir.resolve(), settings.sqlite_path.resolve())

    def session_files(self) -> list[Path]:
        """What a restore sets aside so no session or token outlives it."""
        state = self.root / STATE_FILE
        return [state, *(state.with_name(state.name + suffix) for suffix in WAL_SUFFIXES), self.root / SECRET_FILE]

    def own_files(self) -> list[Path]:
        store_files = [self.store, *(self.store.with_name(self.store.name + s) for s in WAL_SUFFIXES)]
        return [*store_files, *self.session_files(), self.root / LOCK_FILE]


def backup(settings: Settings, target: Path, *, force: bool, progress_to: Any = sys.stderr) -> dict[str, Any]:
    """Copy the store, while solewatch runs or not, into the file `target`; returns what was done."""
    if settings.mongodb_url:
        raise BackupRefused(f"nothing to back up here: {MONGODB_ADVICE}")
    data = DataDirectory.of(settings)
    if not data.store.is_file():
        raise BackupRefused(
            f"there is no solewatch store in the data directory {data.root} (no {data.store.name}); "
            "set SOLEWATCH_DATA_DIR to the directory `solewatch run` uses"
        )
    target = _backup_target(target, data, force=force)
    # A backup reads every worker's history: each tenant's log says so, and the backup holds that entry too.
    detail = {"backup": str(target)}
    record_in_store(
        data.store, lambda tenant: AuditEntry(tenant, Actor.system("cli"), "store.backup", "store", None, detail)
    )
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    # Created first, private: a backup holds everything, secrets of devices and users included.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    try:
        report = copy_online(data.store, partial, progress=_progress_printer("backup", progress_to))
        partial.rename(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)
    return {
        "backup": str(target),
        "store": str(data.store),
        "copied": [data.store.name],
        "left_out": [path.name for path in (data.root / STATE_FILE, data.root / SECRET_FILE) if path.exists()],
        "bytes": report.bytes,
        "pages": report.pages,
        "page_size": report.page_size,
        "steps": report.steps,
        "seconds": round(report.seconds, 3),
    }


def _backup_target(target: Path, data: DataDirectory, *, force: bool) -> Path:
    target = target.expanduser().resolve()
    if target.is_dir():
        raise BackupRefused(f"{target} is a directory; give the backup's file name, such as {target}/solewatch.backup")
    if not target.parent.is_dir():
        raise BackupRefused(f"cannot write {target}: the directory {target.parent} does not exist")
    if target in data.own_files():
        raise BackupRefused(f"{target} is one of the data directory's own files; write the backup elsewhere")
    if target.exists() and target.stat().st_size > 0 and not force:
        raise BackupRefused(f"{target} already exists and is not empty; give another name, or --force to replace it")
    return target


def restore(settings: Settings, source: Path, *, discard_current: bool) -> dict[str, Any]:
    """Put the backup `source` in place of the store; solewatch must be stopped. Returns what was done."""
    started = time.monotonic()
    if settings.mongodb_url:
        raise BackupRefused(f"cannot restore into the data directory: {MONGODB_ADVICE}")
    data = DataDirectory.of(settings)
    source = source.expanduser().resolve()
    if not source.is_file():
        raise BackupRefused(f"no backup at {source}: {'it is a directory' if source.is_dir() else 'no such file'}")
    if source in data.own_files():
        raise BackupRefused(f"{source} is the data directory's own file, not a backup of it")
    try:
        lock = lock_data_dir(data.root)  # also keeps `solewatch run` from starting until the restore is done
    except StartupError as exc:
        raise BackupRefused(f"cannot restore while solewatch uses the data directory: {exc}") from None
    try:
        try:
            check_not_in_use(data.store)
        except StoreInUse:
            raise BackupRefused(
                f"cannot restore: the store {data.store} is open in another process (a solewatch service or "
                "command on this data directory); stop it first"
            ) from None
        if source.stat().st_size >= ANNOUNCE_CHECK_BYTES:
            _say(f"checking {source} ({source.stat().st_size / 1e9:.1f} GB): SQLite's integrity check reads it all")
        try:
            summary = check_store_file(source)
        except BackupFileError as exc:
            raise BackupRefused(f"not restored: {exc}") from None
        aside = None if discard_current or not data.store.exists() else _aside_directory(data.root)
        detail = {"backup": str(source), "replaced_kept_in": None if aside is None else str(aside)}

        def entry_for(tenant_id: int) -> AuditEntry:
            return AuditEntry(tenant_id, Actor.system("cli"), "store.restore", "store", None, detail)

        install_store(
            source, data.store, entry_for=entry_for, aside=aside, progress=_progress_printer("restore", sys.stderr)
        )
        sessions = _end_sessions(data, aside)
    finally:
        os.close(lock)
    return {
        "restored": str(source),
        "store": str(data.store),
        "bytes": summary.bytes,
        "tenants": summary.tenants,
        "devices": summary.devices,
        "integrity": "ok",
        "replaced_kept_in": None if aside is None else str(aside),
        "sessions_ended": sessions,
        "seconds": round(time.monotonic() - started, 3),
    }


def _aside_directory(root: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = root / f"replaced-{stamp}"
    suffix = 1
    while aside.exists():
        suffix += 1
        aside = root / f"replaced-{stamp}-{suffix}"
    return aside


def _end_sessions(data: DataDirectory, aside: Path | None) -> list[str]:
    """Set aside (or delete) the sessions and the generated signing key; returns the names moved."""
    ended = []
    for path in data.session_files():
        if not path.exists():
            continue
        if aside is not None:
            aside.mkdir(exist_ok=True)
            path.rename(aside / path.name)
        else:
            path.unlink()
        ended.append(path.name)
    fsync_directory(data.root)
    return ended


def _say(line: str) -> None:
    sys.stderr.write(f"solewatch restore: {line}\n")
    sys.stderr.flush()


def _progress_printer(what: str, stream: Any) -> Callable[[int, int], None]:
    """Print `what: N% (copied of total pages)` on `stream` at most once a second."""
    last = time.monotonic()
    shown = False

    def show(done: int, total: int) -> None:
        nonlocal last, shown
        now = time.monotonic()
        # A copy that showed progress also shows its end; a quick one shows nothing.
        if now - last >= PROGRESS_EVERY_S or (shown and done == total):
            last, shown = now, True
            stream.write(f"solewatch {what}: {100 * done // max(total, 1)}% ({done:,} of {total:,} pages)\n")
            stream.flush()

    return show

"""`solewatch backup` and `solewatch restore` as an operator runs them: what they copy and put back,
and every refusal as one sentence with nothing lost (docs/operations.md)."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from services.components import register_device
from services.startup import lock_data_dir
from shared.protocols.xsole import Position
from shared.store import FrameRecord
from shared.store.sqlite import SqliteStore
from tests.helpers.stored import commit_frames, frames_on_disk

pytestmark = pytest.mark.slow  # each case runs the command as a process

IMEIS = ("356307042441013", "356307042441021")


def solewatch(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=os.environ | {"SOLEWATCH_DATA_DIR": str(data_dir)} | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit status 1, one plain sentence on stderr naming the problem, nothing on stdout."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


async def make_store(data_dir: Path, imeis: tuple[str, ...] = IMEIS, positions: int = 50) -> None:
    store = SqliteStore(data_dir / "solewatch.db")
    await store.open()
    try:
        now = int(time.time())
        for imei in imeis:
            await register_device(store, imei=imei, name=f"worker {imei[-2:]}")
            device = await store.device_by_imei(imei)
            assert device is not None
            await commit_frames(
                store,
                [
                    FrameRecord(
                        device.id,
                        device.tenant_id,
                        imei,
                        Position(seq, now - 1000 + seq, 436160000 + seq, 70550000, 10, 120, 900, 8, 9, 80, 1),
                        time.time(),
                    )
                    for seq in range(1, positions + 1)
                ],
            )
    finally:
        await store.close()


def imeis_in(db_path: Path) -> set[str]:
    with sqlite3.connect(db_path) as db:
        return {imei for (imei,) in db.execute("SELECT imei FROM devices")}


async def test_backup_is_one_private_file_holding_the_whole_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await make_store(data)
    (data / "jwt-secret").write_text("x" * 64)
    target = tmp_path / "backups" / "monday.db"
    target.parent.mkdir()

    done = solewatch(data, "backup", str(target))

    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["backup"] == str(target) and report["copied"] == ["solewatch.db"]
    assert report["left_out"] == ["jwt-secret"]  # the sessions' file is not there: nobody signed in
    assert report["bytes"] == target.stat().st_size == report["pages"] * report["page_size"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(target.parent) == ["monday.db"]  # no partial file left beside it
    assert frames_on_disk(target) == frames_on_disk(data / "solewatch.db")
    # Reading everyone's history is audited, in each tenant's log; the backup holds its own entry.
    for db_path in (data / "solewatch.db", target):
        with sqlite3.connect(db_path) as db:
            entries = db.execute("SELECT actor_label, target_type, detail FROM audit WHERE action = 'store.backup'")
            assert [(label, kind, orjson.loads(detail)) for label, kind, detail in entries] == [
                ("cli", "store", {"backup": str(target)})
            ]
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_backup_refuses_what_it_cannot_do_well(tmp_path: Path) -> None:
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    refused(solewatch(empty_dir, "backup", str(tmp_path / "b.db")), "no solewatch store", str(empty_dir))
    assert not (tmp_path / "b.db").exists()

    data = tmp_path / "data"
    await make_store(data)
    store_before = (data / "solewatch.db").read_bytes()
    earlier = tmp_path / "earlier.db"
    earlier.write_bytes(b"last week's backup")
    refused(solewatch(data, "backup", str(earlier)), "already exists", "--force")
    assert earlier.read_bytes() == b"last week's backup"
    refused(solewatch(data, "backup", str(tmp_path)), "is a directory")
    refused(solewatch(data, "backup", str(tmp_path / "no" / "such" / "b.db")), "does not exist")
    refused(solewatch(data, "backup", str(data / "solewatch.db")), "data directory's own files")
    refused(
        solewatch(data, "backup", str(tmp_path / "b.db"), env={"SOLEWATCH_MONGODB_URL": "mongodb://127.0.0.1:1/x"}),
        "mongodump",
    )
    assert not (tmp_path / "b.db").exists()
    assert (data / "solewatch.db").read_bytes() == store_before

    forced = solewatch(data, "backup", "--force", str(earlier))
    assert forced.returncode == 0, forced.stderr
    assert imeis_in(earlier) == set(IMEIS)


async def test_restore_puts_the_backup_back_and_keeps_the_replaced_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await make_store(data)
    backup = tmp_path / "b.db"
    assert solewatch(data, "backup", str(backup)).returncode == 0
    await make_store(data, ("356307042441039",), positions=5)  # a device registered after the backup
    (data / "jwt-secret").write_text("s" * 64)
    (data / "authn-state.db").write_bytes(b"sessions")

    done = solewatch(data, "restore", str(backup))

    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert (report["devices"], report["tenants"], report["integrity"]) == (2, 1, "ok")
    assert imeis_in(data / "solewatch.db") == set(IMEIS)
    assert frames_on_disk(data / "solewatch.db") == frames_on_disk(backup)
    aside = Path(report["replaced_kept_in"])
    assert aside.parent == data.resolve() and aside.name.startswith("replaced-")
    assert imeis_in(aside / "solewatch.db") == {*IMEIS, "356307042441039"}
    # Every session and the generated signing key end with the restore: everyone signs in again.
    assert sorted(report["sessions_ended"]) == ["authn-state.db", "jwt-secret"]
    assert not (data / "jwt-secret").exists() and (aside / "jwt-secret").read_text() == "s" * 64
    assert not (data / "authn-state.db").exists()
    with sqlite3.connect(data / "solewatch.db") as db:
        entries = db.execute("SELECT tenant_id, actor_type, actor_label, action, detail FROM audit").fetchall()
    restores = [e for e in entries if e[3] == "store.restore"]
    assert len(restores) == 1 and restores[0][1:3] == ("system", "cli")
    assert orjson.loads(restores[0][4]) == {"backup": str(backup), "replaced_kept_in": str(aside)}

    # The restored store opens, and its history is the backup's.
    store = SqliteStore(data / "solewatch.db")
    await store.open()
    try:
        assert await store.device_by_imei("356307042441039") is None
        assert await store.device_by_imei(IMEIS[0]) is not None
    finally:
        await store.close()

    # The replaced store is a backup in its own right: restoring it undoes the restore.
    assert sorted(os.listdir(aside)) == ["authn-state.db", "jwt-secret", "solewatch.db"]  # whole, no WAL beside it
    undone = solewatch(data, "restore", "--discard-current", str(aside / "solewatch.db"))
    assert undone.returncode == 0, undone.stderr
    assert imeis_in(data / "solewatch.db") == {*IMEIS, "356307042441039"}


async def test_restore_discard_current_keeps_nothing_and_drops_a_stale_wal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await make_store(data)
    backup = tmp_path / "b.db"
    assert solewatch(data, "backup", str(backup)).returncode == 0
    (data / "solewatch.db-wal").write_bytes(os.urandom(4096))  # what a crash might leave

    done = solewatch(data, "restore", "--discard-current", str(backup))

    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["replaced_kept_in"] is None
    assert sorted(os.listdir(data)) == ["solewatch.db", "solewatch.lock"]
    assert imeis_in(data / "solewatch.db") == set(IMEIS)


async def test_restore_refuses_junk_wrong_paths_and_a_running_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await make_store(data)
    before = frames_on_disk(data / "solewatch.db")
    good = tmp_path / "good.db"
    assert solewatch(data, "backup", str(good)).returncode == 0

    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(20_000))
    refused(solewatch(data, "restore", str(junk)), "not a SQLite database", str(junk))
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    refused(solewatch(data, "restore", str(other)), "not a solewatch store")
    damaged = tmp_path / "damaged.db"
    raw = bytearray(good.read_bytes())
    page = 4096
    raw[3 * page : 3 * page + 200] = os.urandom(200)  # scribbled over a b-tree page
    damaged.write_bytes(bytes(raw))
    refused(solewatch(data, "restore", str(damaged)), "damaged")
    refused(solewatch(data, "restore", str(tmp_path / "missing.db")), "no such file")
    refused(solewatch(data, "restore", str(tmp_path)), "is a directory")
    refused(solewatch(data, "restore", str(data / "solewatch.db")), "own file")
    mongo = {"SOLEWATCH_MONGODB_URL": "mongodb://127.0.0.1:1/x"}
    refused(solewatch(data, "restore", str(good), env=mongo), "mongodump")

    lock = lock_data_dir(data)  # what a running `solewatch run` holds for its whole life
    try:
        refused(solewatch(data, "restore", str(good)), "cannot restore while solewatch", f"pid {os.getpid()}")
    finally:
        os.close(lock)

    # A process on the store without the data directory's lock (a distributed service on SQLite, a CLI command).
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data / "solewatch.db")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        refused(solewatch(data, "restore", str(good)), "open in another process")
    finally:
        holder.kill()
        holder.wait()

    assert frames_on_disk(data / "solewatch.db") == before
    assert not [name for name in os.listdir(data) if name.startswith(("replaced-", ".solewatch.db"))]
    assert solewatch(data, "restore", str(good)).returncode == 0  # once it is gone


HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("SELECT count(*) FROM devices").fetchone()
print("open", flush=True)
time.sleep(60)
"""

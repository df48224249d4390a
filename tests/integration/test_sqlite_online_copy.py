"""The online copy under a writer in another process committing all the time, as `solewatch run` does:
it ends (a stepped backup API copy restarts at every foreign commit unless it holds one snapshot), it
is one consistent moment of the database, and the writer is never held up for long."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.store.sqlite_backup import copy_online

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

WRITER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
slowest = 0.0
while True:
    started = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO rows(body, total) VALUES (randomblob(500), (SELECT count(*) FROM rows) + 1)")
    db.execute("COMMIT")
    slowest = max(slowest, time.perf_counter() - started)
    print(f"{slowest:.4f}", flush=True)
    time.sleep(0.001)
"""


def test_copy_ends_and_is_one_moment_while_another_process_commits(tmp_path: Path) -> None:
    source = tmp_path / "live.db"
    with sqlite3.connect(source, isolation_level=None) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB, total INTEGER)")
        db.execute("BEGIN")
        db.executemany("INSERT INTO rows(body, total) VALUES (randomblob(500), ?)", [(i,) for i in range(1, 20_001)])
        db.execute("COMMIT")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(source)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        writer.stdout.readline()  # it is committing
        seen: list[tuple[int, int]] = []
        report = copy_online(
            source, tmp_path / "copy.db", progress=lambda done, total: seen.append((done, total)), step_pages=64
        )
        time.sleep(0.2)  # it went on committing after the copy
    finally:
        writer.kill()
        out, _ = writer.communicate()
    slowest_commit = float(out.split()[-1])

    assert report.steps > 10 and report.steps == len(seen)  # many steps, never started over
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and seen[-1][0] == seen[-1][1]
    with sqlite3.connect(tmp_path / "copy.db") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count, last_total = copy.execute("SELECT count(*), max(total) FROM rows").fetchone()
    with sqlite3.connect(source) as live:
        live_count = live.execute("SELECT count(*) FROM rows").fetchone()[0]
    assert count == last_total  # every row up to one commit, none after: a single moment
    assert 20_000 < count < live_count  # the writer's commits before the copy are in, later ones are not
    assert slowest_commit < 0.5, f"a commit waited {slowest_commit:.3f} s during the copy"

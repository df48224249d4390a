"""A cache that survives a restart: SQLite in WAL mode, in a file of its own.

The all-in-one mode keeps sessions, revocations and login throttling here (see
services/authn/state.py), so that after a restart of `solewatch run` they are
what they were before, as they are on the distributed mode's Redis (which runs
with its append-only file). Hot-path state stays in MemoryCache.

Expiry times are wall-clock timestamps, not monotonic ones: they must mean the
same thing to the next process. Expired rows are ignored when read and deleted
in bulk now and then.

Writes run on one dedicated thread over one connection, so writes from this
process never interleave; the read-then-write operations also take SQLite's
write lock (BEGIN IMMEDIATE), so another process on the same file cannot
interleave either. A `get` (one per authenticated request: is this session
revoked?) reads on the event loop over a second connection: a primary-key
lookup in a small WAL database takes microseconds and never waits for a
writer, while a hop to a thread and back costs far more on a busy process.

synchronous=NORMAL: in WAL mode a commit is safe from a crash or a kill -9 of
the process; only a power cut may lose the last commits (Redis's appendfsync
everysec promises the same).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from shared.cache.bucket import Allowance, take_token
from shared.cache.port import CacheUnavailable

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_by_expiry ON cache(expires_at) WHERE expires_at IS NOT NULL;
"""
# Expired rows nobody reads again are deleted after this many writes (and at start).
SWEEP_EVERY_WRITES = 1_000
BUSY_TIMEOUT_S = 5.0


class SqliteCache:
    name = "cache"

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._conn: sqlite3.Connection | None = None  # the writer, used on self._thread only
        self._reader: sqlite3.Connection | None = None  # used on the event loop
        self._thread: ThreadPoolExecutor | None = None
        self._writes = 0

    # -- plumbing ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            conn.execute("DELETE FROM cache WHERE expires_at <= ?", (self._clock(),))
        except BaseException:
            conn.close()
            raise
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, writes: bool = False) -> T:
        def run() -> T:
            if self._conn is None:
                raise RuntimeError("SqliteCache is not started")
            result = fn(self._conn)
            if writes:
                self._writes += 1
                if self._writes % SWEEP_EVERY_WRITES == 0:
                    self._conn.execute("DELETE FROM cache WHERE expires_at <= ?", (self._clock(),))
            return result

        if self._thread is None:
            raise RuntimeError("SqliteCache is not started")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, run)
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk full, I/O error
            raise CacheUnavailable(f"sqlite cache {self.path}: {exc}") from exc

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _live_value(self, conn: sqlite3.Connection, key: str) -> bytes | None:
        row = conn.execute("SELECT value, expires_at FROM cache WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self._clock()):
            return None
        return bytes(row[0])

    @staticmethod
    def _in_write_transaction(conn: sqlite3.Connection, fn: Callable[[], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    # -- the port -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-cache")
        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._thread, self._connect)
            self._reader = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        thread, conn, self._thread, self._conn = self._thread, self._conn, None, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        if thread is None:
            return
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(thread, conn.close)
        thread.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def get(self, key: str) -> bytes | None:
        if self._reader is None:
            raise RuntimeError("SqliteCache is not started")
        try:
            return self._live_value(self._reader, key)
        except sqlite3.OperationalError as exc:
            raise CacheUnavailable(f"sqlite cache {self.path}: {exc}") from exc

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        # One key at a time on the reader, as `get` does: each is an index lookup, no thread hop.
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        expires_at = self._expiry(ttl)
        await self._run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO cache (key, value, expires_at) VALUES (?, ?, ?)", (key, value, expires_at)
            ),
            writes=True,
        )

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            def claim() -> bool:
                if self._live_value(conn, key) is not None:
                    return False
                conn.execute(
                    "INSERT OR REPLACE INTO cache (key, value, expires_at) VALUES (?, ?, ?)",
                    (key, value, self._expiry(ttl)),
                )
                return True

            return self._in_write_transaction(conn, claim)

        return await self._run(run, writes=True)

    async def delete(self, key: str) -> None:
        await self._run(lambda c: c.execute("DELETE FROM cache WHERE key = ?", (key,)), writes=True)

    async def incr(self, key: str, *, ttl: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            def count() -> int:
                current = self._live_value(conn, key)
                if current is None:
                    # A new window: it ends `ttl` after this first increment.
                    conn.execute(
                        "INSERT OR REPLACE INTO cache (key, value, expires_at) VALUES (?, ?, ?)",
                        (key, b"1", self._expiry(ttl)),
                    )
                    return 1
                new = int(current) + 1  # stored as ASCII digits, as Redis keeps counters
                conn.execute("UPDATE cache SET value = ? WHERE key = ?", (str(new).encode(), key))
                return new

            return self._in_write_transaction(conn, count)

        return await self._run(run, writes=True)

    async def take_token(self, key: str, *, rate: float, burst: int) -> Allowance:
        def run(conn: sqlite3.Connection) -> Allowance:
            def take() -> Allowance:
                stored = self._live_value(conn, key)
                now = self._clock()
                allowance, full_at = take_token(None if stored is None else float(stored), now, rate=rate, burst=burst)
                if full_at is not None:  # the row expires when the bucket is full: a missing row is a full bucket
                    conn.execute(
                        "INSERT OR REPLACE INTO cache (key, value, expires_at) VALUES (?, ?, ?)",
                        (key, repr(full_at).encode(), full_at),
                    )
                return allowance

            return self._in_write_transaction(conn, take)

        return await self._run(run, writes=True)

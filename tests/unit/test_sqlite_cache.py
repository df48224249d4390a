"""What the SQLite cache adds to the cache contract: it outlives the process, and the
all-in-one mode routes authn state (only) to it. The contract itself is
tests/contract/test_cache_contract.py."""

from __future__ import annotations

import sqlite3

from services.authn.state import STATE_FILE, embedded_cache
from shared.cache.sqlite import SWEEP_EVERY_WRITES, SqliteCache
from shared.config import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now


async def test_values_counters_and_expiry_times_survive_a_reopen(tmp_path):
    clock = Clock()
    path = tmp_path / "cache.db"
    first = SqliteCache(path, clock=clock)
    await first.start()
    await first.set("forever", b"kept")
    await first.set("for-100s", b"kept a while", ttl=100)
    assert [await first.incr("window", ttl=60) for _ in range(3)] == [1, 2, 3]
    await first.close()

    clock.now += 50  # the next process, 50 s later
    second = SqliteCache(path, clock=clock)
    await second.start()
    try:
        assert await second.get("forever") == b"kept"
        assert await second.get("for-100s") == b"kept a while"
        assert await second.incr("window", ttl=60) == 4  # the same window, carried on
        clock.now += 51
        assert await second.get("for-100s") is None  # expired 100 s after it was set, across the restart
        assert await second.incr("window", ttl=60) == 1  # and the window started afresh
    finally:
        await second.close()


async def test_expired_rows_are_deleted_not_only_hidden(tmp_path):
    clock = Clock()
    path = tmp_path / "cache.db"
    cache = SqliteCache(path, clock=clock)
    await cache.start()
    try:
        for n in range(SWEEP_EVERY_WRITES):
            await cache.set(f"short-{n}", b"x", ttl=1)
        clock.now += 2
        for n in range(SWEEP_EVERY_WRITES):
            await cache.set(f"long-{n}", b"x", ttl=3600)
    finally:
        await cache.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM cache WHERE key LIKE 'short-%'").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM cache").fetchone() == (SWEEP_EVERY_WRITES,)


async def test_the_all_in_one_cache_persists_authn_keys_only(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    authn_keys = ["session-revoked:s1", "session:s2", "refresh:abc", "refresh-used:def", "login-wait:x:10.0.0.1"]
    first = embedded_cache(settings)
    await first.start()
    for key in authn_keys:
        await first.set(key, b"1", ttl=600)
    await first.set("device:7:online", b"host:1", ttl=600)  # hot-path state: memory
    await first.close()
    assert (settings.data_dir / STATE_FILE).is_file()

    second = embedded_cache(settings)
    await second.start()
    try:
        assert [await second.get(key) for key in authn_keys] == [b"1"] * len(authn_keys)
        assert await second.get("device:7:online") is None
        assert second.adapter_for("device:7:online") is second.fast
        assert second.adapter_for("detect:7") is second.fast
    finally:
        await second.close()


async def test_the_all_in_one_cache_reads_many_keys_from_both_of_its_halves_in_order(tmp_path):
    cache = embedded_cache(Settings(data_dir=tmp_path / "data"))
    await cache.start()
    try:
        await cache.set("session:s1", b"durable", ttl=600)
        await cache.set("device:7:online", b"memory", ttl=600)
        keys = ["device:7:online", "device:8:online", "session:s1", "session:none", "device:7:online"]
        assert await cache.get_many(keys) == [b"memory", None, b"durable", None, b"memory"]
    finally:
        await cache.close()

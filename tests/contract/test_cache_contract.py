"""The cache port's contract (shared/cache/port.py), for every adapter in CACHE_FACTORIES.

Expiry is checked with short ttls and bounded waits: an adapter may expire a
key a little late, never early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shared.cache import Cache
from tests.contract.conftest import eventually

Unique = Callable[[str], str]


async def test_get_set_delete(cache: Cache, unique: Unique) -> None:
    key = unique("k")
    assert await cache.get(key) is None
    await cache.set(key, b"one")
    assert await cache.get(key) == b"one"
    await cache.set(key, b"two")
    assert await cache.get(key) == b"two"
    await cache.delete(key)
    assert await cache.get(key) is None
    await cache.delete(key)  # deleting a missing key is harmless
    await cache.delete(unique("never-set"))


async def test_get_many_answers_each_key_in_order(cache: Cache, unique: Unique) -> None:
    present, expiring, absent = unique("present"), unique("expiring"), unique("absent")
    await cache.set(present, b"P")
    await cache.set(expiring, b"E", ttl=0.2)
    assert await cache.get_many([absent, present, expiring, present]) == [None, b"P", b"E", b"P"]
    assert await cache.get_many([]) == []
    await eventually(lambda: _absent(cache, expiring))
    assert await cache.get_many([expiring, present]) == [None, b"P"]


async def test_ping_on_a_started_cache(cache: Cache) -> None:
    await cache.ping()


async def test_values_are_bytes_round_trip(cache: Cache, unique: Unique) -> None:
    values = {
        "all-bytes": bytes(range(256)),
        "not-utf8": b"\xff\xfe\x80\xc3\x28",
        "nul": b"a\x00b",
        "empty": b"",  # an empty value is not an absent one
        "large": bytes(range(256)) * 4096,
    }
    for name, value in values.items():
        await cache.set(unique(name), value)
    for name, value in values.items():
        got = await cache.get(unique(name))
        assert got == value and isinstance(got, bytes), name


async def test_keys_are_independent(cache: Cache, unique: Unique) -> None:
    a, b = unique("a"), unique("b")
    await cache.set(a, b"A")
    await cache.set(b, b"B", ttl=0.2)
    assert await cache.set_if_absent(unique("c"), b"C")
    await cache.delete(b)
    assert (await cache.get(a), await cache.get(b), await cache.get(unique("c"))) == (b"A", None, b"C")
    assert await cache.incr(unique("n1"), ttl=60) == 1
    assert await cache.incr(unique("n1"), ttl=60) == 2
    assert await cache.incr(unique("n2"), ttl=60) == 1
    assert await cache.get(a) == b"A"


async def test_a_value_expires_after_its_ttl(cache: Cache, unique: Unique) -> None:
    short, forever = unique("short"), unique("forever")
    await cache.set(short, b"v", ttl=0.2)
    await cache.set(forever, b"w")
    assert await cache.get(short) == b"v"
    await eventually(lambda: _absent(cache, short))
    assert await cache.get(forever) == b"w"


async def test_set_replaces_the_value_and_its_ttl(cache: Cache, unique: Unique) -> None:
    key = unique("k")
    await cache.set(key, b"old", ttl=0.2)
    await cache.set(key, b"new")  # no ttl: the key no longer expires
    await asyncio.sleep(0.35)
    assert await cache.get(key) == b"new"

    other = unique("other")
    await cache.set(other, b"old")
    await cache.set(other, b"new", ttl=0.2)
    await eventually(lambda: _absent(cache, other))


async def test_set_if_absent(cache: Cache, unique: Unique) -> None:
    key = unique("k")
    assert await cache.set_if_absent(key, b"first") is True
    assert await cache.set_if_absent(key, b"second") is False
    assert await cache.get(key) == b"first"
    await cache.delete(key)
    assert await cache.set_if_absent(key, b"third") is True
    assert await cache.get(key) == b"third"


async def test_set_if_absent_succeeds_again_once_the_key_expired(cache: Cache, unique: Unique) -> None:
    key = unique("lock")
    assert await cache.set_if_absent(key, b"a", ttl=0.2) is True
    assert await cache.set_if_absent(key, b"b", ttl=0.2) is False
    await eventually(lambda: _absent(cache, key))
    assert await cache.set_if_absent(key, b"c") is True
    assert await cache.get(key) == b"c"


async def test_set_if_absent_has_exactly_one_winner_among_concurrent_callers(cache: Cache, unique: Unique) -> None:
    key = unique("lock")
    results = await asyncio.gather(*(cache.set_if_absent(key, str(n).encode(), ttl=30) for n in range(50)))
    winners = [n for n, won in enumerate(results) if won]
    assert len(winners) == 1
    assert await cache.get(key) == str(winners[0]).encode()


async def test_incr_counts_from_one(cache: Cache, unique: Unique) -> None:
    key = unique("n")
    assert [await cache.incr(key, ttl=60) for _ in range(5)] == [1, 2, 3, 4, 5]
    await cache.delete(key)
    assert await cache.incr(key, ttl=60) == 1


async def test_incr_counts_concurrent_callers_once_each(cache: Cache, unique: Unique) -> None:
    key = unique("n")
    counts = await asyncio.gather(*(cache.incr(key, ttl=30) for _ in range(50)))
    assert sorted(counts) == list(range(1, 51))


async def test_incr_window_expires_ttl_after_the_first_increment(cache: Cache, unique: Unique) -> None:
    # A fixed window, not a sliding one: increments inside it do not push its end back.
    key = unique("window")
    assert await cache.incr(key, ttl=0.4) == 1
    await asyncio.sleep(0.2)
    assert await cache.incr(key, ttl=0.4) == 2
    await asyncio.sleep(0.3)  # 0.5 s after the first increment, 0.3 s after the last
    assert await cache.incr(key, ttl=0.4) == 1


async def test_an_incr_window_that_ran_out_starts_a_new_one(cache: Cache, unique: Unique) -> None:
    key = unique("window")
    assert await cache.incr(key, ttl=0.2) == 1
    assert await cache.incr(key, ttl=0.2) == 2
    await eventually(lambda: _absent(cache, key))
    assert await cache.incr(key, ttl=0.2) == 1
    assert await cache.incr(key, ttl=0.2) == 2


async def test_take_token_gives_the_burst_then_refuses(cache: Cache, unique: Unique) -> None:
    key = unique("bucket")
    taken = [await cache.take_token(key, rate=0.5, burst=4) for _ in range(4)]
    assert [(a.allowed, a.remaining) for a in taken] == [(True, 3), (True, 2), (True, 1), (True, 0)]
    refused = await cache.take_token(key, rate=0.5, burst=4)
    assert refused.allowed is False and refused.remaining == 0
    assert 1.5 < refused.retry_after <= 2.0  # one token every 2 s
    assert 7.5 < refused.full_after <= 8.0
    assert (await cache.take_token(unique("other"), rate=0.5, burst=4)).remaining == 3  # buckets are independent


async def test_take_token_refills_at_the_rate(cache: Cache, unique: Unique) -> None:
    key = unique("bucket")
    assert [(await cache.take_token(key, rate=2, burst=2)).allowed for _ in range(3)] == [True, True, False]
    await asyncio.sleep(0.6)  # a token every 0.5 s
    assert (await cache.take_token(key, rate=2, burst=2)).allowed is True
    assert (await cache.take_token(key, rate=2, burst=2)).allowed is False
    await asyncio.sleep(1.2)  # longer than the burst takes to come back: full, no more
    assert [(await cache.take_token(key, rate=2, burst=2)).allowed for _ in range(3)] == [True, True, False]


async def test_take_token_gives_each_token_once_to_concurrent_callers(cache: Cache, unique: Unique) -> None:
    key = unique("bucket")
    taken = await asyncio.gather(*(cache.take_token(key, rate=0.01, burst=10) for _ in range(40)))
    assert sum(a.allowed for a in taken) == 10
    assert sorted(a.remaining for a in taken if a.allowed) == list(range(10))


async def _absent(cache: Cache, key: str) -> bool:
    return await cache.get(key) is None

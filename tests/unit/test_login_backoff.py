"""The device login back-off's counting (services/listener/login_backoff.py): the
delays it grows, the listeners sharing one cache, and a cache that is down."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.listener.login_backoff import LoginBackoff, backoff_delay
from shared.cache import Cache, CacheUnavailable
from shared.cache.memory import MemoryCache
from shared.cache.redis import RedisCache
from shared.config import Settings
from shared.protocols.xsole import LoginStatus

IMEI = "356307042441013"
SETTINGS = Settings(device_login_backoff=1.0, device_login_backoff_max=30.0)


def test_the_delay_doubles_after_the_first_failure_up_to_its_ceiling() -> None:
    delays = [backoff_delay(n, base=1.0, ceiling=30.0) for n in range(1, 9)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_delay(10**6, base=1.0, ceiling=30.0) == 30.0  # no overflow however long it goes on


@pytest.fixture(params=["memory", "redis"])
async def shared_cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        cache: Cache = MemoryCache()
    else:
        cache = RedisCache(request.getfixturevalue("redis_server"))
    await cache.start()
    await cache.delete(f"device-login:failures:imei:{IMEI}")
    await cache.delete("device-login:failures:address:192.0.2.7")
    try:
        yield cache
    finally:
        await cache.close()


async def test_listeners_sharing_a_cache_count_the_same_failures(shared_cache: Cache) -> None:
    # Behind one load balancer an attacker's connections land on every listener in turn.
    first, second = LoginBackoff(shared_cache, lambda: SETTINGS), LoginBackoff(shared_cache, lambda: SETTINGS)
    results = []
    for listener in (first, second, first, second):
        results.append(await listener.refused(imei=IMEI, address="192.0.2.7", status=LoginStatus.BAD_TOKEN))
    assert results == [(1, 0.0), (2, 1.0), (3, 2.0), (4, 4.0)]


async def test_a_disabled_device_is_not_counted_and_an_unknown_imei_counts_for_its_address_only() -> None:
    backoff = LoginBackoff(MemoryCache(), lambda: SETTINGS)
    assert await backoff.refused(imei=IMEI, address="192.0.2.7", status=LoginStatus.DISABLED) == (0, 0.0)
    assert await backoff.refused(imei=IMEI, address=None, status=LoginStatus.UNKNOWN_DEVICE) == (0, 0.0)
    assert await backoff.refused(imei=IMEI, address="192.0.2.7", status=LoginStatus.UNKNOWN_DEVICE) == (1, 0.0)
    assert await backoff.refused(imei=IMEI, address=None, status=LoginStatus.BAD_TOKEN) == (1, 0.0)


class DownCache(MemoryCache):
    async def incr(self, key: str, *, ttl: float) -> int:
        raise CacheUnavailable("redis unreachable")

    async def get(self, key: str) -> bytes | None:
        raise CacheUnavailable("redis unreachable")

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        raise CacheUnavailable("redis unreachable")


async def test_a_cache_that_is_down_falls_back_to_this_process_counts() -> None:
    backoff = LoginBackoff(DownCache(), lambda: SETTINGS)
    assert [await backoff.refused(imei=IMEI, address=None, status=LoginStatus.BAD_TOKEN) for _ in range(3)] == [
        (1, 0.0),
        (2, 1.0),
        (3, 2.0),
    ]
    await backoff.hold(IMEI, 30.0)
    assert await backoff.held(IMEI)


async def test_setting_the_ceiling_to_0_turns_the_back_off_off() -> None:
    off = Settings(device_login_backoff_max=0)
    backoff = LoginBackoff(MemoryCache(), lambda: off)
    assert {await backoff.refused(imei=IMEI, address="192.0.2.7", status=LoginStatus.BAD_TOKEN) for _ in range(5)} == {
        (0, 0.0)
    }

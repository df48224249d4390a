"""Login throttling on the caches that hold it for real: the all-in-one mode's SQLite
cache and the distributed mode's Redis (a private server from tests/harness).

The policy itself is tested on a fake clock in tests/unit/test_authn_ratelimit.py;
here the same limiter runs over each real adapter, on the real clock, with
emails and addresses of its own so that tests sharing the Redis server stay apart.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.authn.ratelimit import LoginAttempt, LoginRateLimiter, RateLimited
from shared.cache import Cache
from shared.cache.redis import RedisCache
from shared.cache.sqlite import SqliteCache
from tests.harness.servers import redis_server  # noqa: F401  (the fixture, registered by import)


@pytest.fixture(params=["sqlite", "redis"])
async def cache(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cache]:
    adapter: Cache
    if request.param == "redis":
        adapter = RedisCache(request.getfixturevalue("redis_server"))
    else:
        adapter = SqliteCache(tmp_path / "authn-state.db")
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture
def names() -> tuple[str, str, str]:
    """An email and two IPv4 addresses no other test uses."""
    run = uuid.uuid4().int
    return f"ana-{run}@example.com", f"10.{run % 250}.{run // 250 % 250}.1", f"10.{run % 250}.{run // 250 % 250}.2"


async def test_an_attacker_waits_while_the_user_gets_in(cache, names):
    email, attacker, user = names
    limiter = LoginRateLimiter(cache, free_failures=2, first_delay=100, max_delay=10_000, per_address=50)
    for _ in range(3):  # two free failures, then one that earns a delay
        await limiter.failed(await limiter.begin(account=email, address=attacker))
    with pytest.raises(RateLimited) as refused:
        await limiter.begin(account=email, address=attacker)
    assert 90 <= refused.value.retry_after <= 100
    await limiter.succeeded(await limiter.begin(account=email, address=user))
    # Another process (a second limiter over the same cache) sees the same delay.
    with pytest.raises(RateLimited):
        await LoginRateLimiter(cache, free_failures=2, first_delay=100).begin(account=email, address=attacker)


async def test_parallel_guesses_are_held_to_the_free_ones_and_one_turn(cache, names):
    email, attacker, _ = names
    limiter = LoginRateLimiter(cache, free_failures=3, per_address=50)
    results = await asyncio.gather(
        *(limiter.begin(account=email, address=attacker) for _ in range(20)), return_exceptions=True
    )
    assert sum(isinstance(result, LoginAttempt) for result in results) == 4
    assert all(isinstance(result, (LoginAttempt, RateLimited)) for result in results)


async def test_an_address_budget_holds_across_accounts_and_spares_known_ones(cache, names):
    email, office, elsewhere = names
    limiter = LoginRateLimiter(cache, per_address=10)
    await limiter.succeeded(await limiter.begin(account=email, address=office))
    results = await asyncio.gather(
        *(limiter.begin(account=f"{n}-{email}", address=office) for n in range(25)), return_exceptions=True
    )
    assert sum(isinstance(result, LoginAttempt) for result in results) == 10
    with pytest.raises(RateLimited):
        await limiter.begin(account=f"fresh-{email}", address=office)
    await limiter.succeeded(await limiter.begin(account=email, address=office))  # known from this address
    await limiter.succeeded(await limiter.begin(account=f"fresh-{email}", address=elsewhere))

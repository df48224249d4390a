"""Failed-login limits per account and per address, over the in-memory cache."""

from __future__ import annotations

import asyncio

import pytest

from services.authn.ratelimit import LoginRateLimiter, RateLimited
from shared.cache.memory import MemoryCache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock) -> LoginRateLimiter:
    cache = MemoryCache()
    cache._clock = clock
    return LoginRateLimiter(cache, per_account=5, per_address=20, window=900, clock=clock)


async def fail(limiter: LoginRateLimiter, account: str, address: str = "10.0.0.1") -> None:
    await limiter.failed(await limiter.begin(account=account, address=address))


async def test_account_locks_after_its_limit(limiter):
    for _ in range(5):
        await fail(limiter, "ana@example.com")
    with pytest.raises(RateLimited) as refused:
        await limiter.begin(account="ana@example.com", address="10.0.0.1")
    assert refused.value.retry_after == 900
    # Whatever the case of the email, and from any address.
    with pytest.raises(RateLimited):
        await limiter.begin(account="ANA@example.com ", address="10.9.9.9")
    await limiter.begin(account="bob@example.com", address="10.0.0.1")


async def test_lock_ends_after_the_window(limiter, clock):
    for _ in range(5):
        await fail(limiter, "ana@example.com")
    clock.now += 600
    with pytest.raises(RateLimited) as refused:
        await limiter.begin(account="ana@example.com", address="10.0.0.1")
    assert refused.value.retry_after == 300
    clock.now += 300
    attempt = await limiter.begin(account="ana@example.com", address="10.0.0.1")
    assert attempt.account_attempts == 1  # a fresh count


async def test_failures_spread_over_more_than_a_window_do_not_lock(limiter, clock):
    for _ in range(4):
        await fail(limiter, "ana@example.com")
    clock.now += 901
    for _ in range(4):
        await fail(limiter, "ana@example.com")
    await limiter.begin(account="ana@example.com", address="10.0.0.1")


async def test_address_locks_after_its_limit_across_accounts(limiter):
    for n in range(20):
        await fail(limiter, f"user{n}@example.com")
    with pytest.raises(RateLimited) as refused:
        await limiter.begin(account="fresh@example.com", address="10.0.0.1")
    assert refused.value.retry_after == 900
    await limiter.begin(account="fresh@example.com", address="10.0.0.2")


async def test_success_resets_the_account_but_not_the_address(clock):
    cache = MemoryCache()
    cache._clock = clock
    limiter = LoginRateLimiter(cache, per_account=5, per_address=6, window=900, clock=clock)
    for _ in range(4):
        await fail(limiter, "ana@example.com")
    await limiter.succeeded(await limiter.begin(account="ana@example.com", address="10.0.0.1"))
    for _ in range(2):  # 6 address failures in all, but only 2 on the account since the success
        await fail(limiter, "ana@example.com")
    with pytest.raises(RateLimited):
        await limiter.begin(account="ana@example.com", address="10.0.0.1")
    attempt = await limiter.begin(account="ana@example.com", address="10.0.0.2")
    assert attempt.account_attempts == 3


async def test_concurrent_guesses_cannot_overtake_the_account_limit(limiter):
    results = await asyncio.gather(
        *(limiter.begin(account="ana@example.com", address=f"10.0.1.{n}") for n in range(12)),
        return_exceptions=True,
    )
    refused = [result for result in results if isinstance(result, RateLimited)]
    assert len(results) - len(refused) == 5
    assert all(result.retry_after > 0 for result in refused)


def test_settings_carry_the_limits(tmp_path):
    from shared.config import Settings

    settings = Settings(data_dir=tmp_path, login_max_failures_per_account=3, login_failure_window=60)
    limiter = LoginRateLimiter.from_settings(settings, MemoryCache())
    assert (limiter._per_account, limiter._per_address, limiter._window) == (3, 20, 60)

"""Login throttling (services/authn/ratelimit.py) over the in-memory cache, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from services.authn.ratelimit import LoginAttempt, LoginRateLimiter, RateLimited, address_scope
from shared.cache.memory import MemoryCache

ATTACKER = "203.0.113.7"
VICTIM_HOME = "198.51.100.1"


class Clock:
    def __init__(self) -> None:
        self.now = 3600.0 * 300  # a multiple of the window: an address window starts here

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_limiter(clock: Clock, **limits: float) -> LoginRateLimiter:
    cache = MemoryCache()
    cache._clock = clock
    values = {"free_failures": 3, "first_delay": 1.0, "max_delay": 900.0, "per_address": 30, "window": 3600.0}
    values.update(limits)
    return LoginRateLimiter(cache, clock=clock, **values)  # type: ignore[arg-type]


@pytest.fixture
def limiter(clock) -> LoginRateLimiter:
    return make_limiter(clock)


async def fail(limiter: LoginRateLimiter, account: str = "ana@example.com", address: str = ATTACKER) -> None:
    await limiter.failed(await limiter.begin(account=account, address=address))


async def succeed(limiter: LoginRateLimiter, account: str = "ana@example.com", address: str = ATTACKER) -> None:
    await limiter.succeeded(await limiter.begin(account=account, address=address))


async def refused_for(limiter: LoginRateLimiter, account: str = "ana@example.com", address: str = ATTACKER) -> int:
    with pytest.raises(RateLimited) as refused:
        await limiter.begin(account=account, address=address)
    return refused.value.retry_after


async def hammer(limiter: LoginRateLimiter, clock: Clock, guesses: int, address: str = ATTACKER) -> list[int]:
    """Guess wrong `guesses` times, each time waiting as long as told; the waits told."""
    waits = []
    for _ in range(guesses):
        try:
            attempt = await limiter.begin(account="ana@example.com", address=address)
        except RateLimited as refused:
            waits.append(refused.retry_after)
            clock.now += refused.retry_after
            attempt = await limiter.begin(account="ana@example.com", address=address)
        await limiter.failed(attempt)
    return waits


async def test_delays_grow_per_account_and_address_after_the_free_failures(limiter, clock):
    assert await hammer(limiter, clock, 3) == []  # the free ones: typos cost nothing
    assert await hammer(limiter, clock, 7) == [1, 2, 4, 8, 16, 32]
    assert await refused_for(limiter) == 64


async def test_delays_stop_growing_at_the_maximum(clock):
    limiter = make_limiter(clock, max_delay=60.0)
    waits = await hammer(limiter, clock, 15)
    assert waits[-5:] == [60] * 5
    assert await refused_for(limiter) == 60


async def test_the_real_user_logs_in_from_elsewhere_while_the_account_is_hammered(limiter, clock):
    await hammer(limiter, clock, 12)
    assert await refused_for(limiter) > 0  # the attacker waits...
    await succeed(limiter, address=VICTIM_HOME)  # ...the user, from an address that was not failing, does not


async def test_a_success_forgets_the_pairs_failures(limiter, clock):
    for _ in range(3):
        await fail(limiter, address=VICTIM_HOME)
    await succeed(limiter, address=VICTIM_HOME)
    for _ in range(3):  # three free failures again
        await fail(limiter, address=VICTIM_HOME)
    attempt = await limiter.begin(account="ana@example.com", address=VICTIM_HOME)
    assert attempt.attempts == 4


async def test_failures_are_forgotten_after_the_window(limiter, clock):
    for _ in range(3):
        await fail(limiter)
    clock.now += 3601
    attempt = await limiter.begin(account="ana@example.com", address=ATTACKER)
    assert attempt.attempts == 1


async def test_an_address_has_a_budget_across_accounts(limiter, clock):
    for n in range(30):  # one guess on each of 30 accounts: no pair ever waits
        await fail(limiter, account=f"user{n}@example.com")
    retry_after = await refused_for(limiter, account="fresh@example.com")
    assert retry_after == 3600  # until the address's window ends
    await succeed(limiter, account="fresh@example.com", address=VICTIM_HOME)  # other addresses are not concerned
    clock.now += 3600
    await fail(limiter, account="fresh@example.com")  # a new window, a new budget


async def test_over_its_budget_an_address_still_logs_into_accounts_it_knows(limiter):
    # A colleague behind the same NAT as the attacker, who logged in from there before.
    await succeed(limiter, account="colleague@example.com")
    for n in range(30):
        await fail(limiter, account=f"user{n}@example.com")
    await refused_for(limiter, account="fresh@example.com")
    await succeed(limiter, account="colleague@example.com")


async def test_successes_give_back_the_budget_they_took(limiter):
    for n in range(100):  # many users behind one NAT, each logging in once
        await succeed(limiter, account=f"user{n}@example.com")
    for n in range(30):
        await fail(limiter, account=f"other{n}@example.com")
    await refused_for(limiter, account="fresh@example.com")


async def test_parallel_guesses_on_one_account_get_one_turn_past_the_free_failures(limiter):
    results = await asyncio.gather(
        *(limiter.begin(account="ana@example.com", address=ATTACKER) for _ in range(12)), return_exceptions=True
    )
    admitted = [result for result in results if isinstance(result, LoginAttempt)]
    assert len(admitted) == 4  # the 3 free ones and one turn
    assert all(
        isinstance(result, RateLimited) and result.retry_after > 0
        for result in results
        if not isinstance(result, LoginAttempt)
    )


async def test_parallel_guesses_over_many_accounts_count_against_the_address_budget(limiter):
    # None has failed yet when all of them are in flight: the budget still holds.
    results = await asyncio.gather(
        *(limiter.begin(account=f"user{n}@example.com", address=ATTACKER) for n in range(100)), return_exceptions=True
    )
    assert sum(isinstance(result, LoginAttempt) for result in results) == 30


def test_ipv6_addresses_count_per_64_block():
    assert address_scope("2001:db8:1:2:aaaa::1") == address_scope("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_scope("2001:db8:1:3::1") != address_scope("2001:db8:1:2::1")
    assert address_scope("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_scope("192.0.2.1") == "192.0.2.1"
    assert address_scope("unknown") == "unknown"


def test_settings_carry_the_limits(tmp_path):
    from shared.config import Settings

    settings = Settings(
        data_dir=tmp_path,
        login_free_failures=2,
        login_first_delay=5,
        login_max_delay=300,
        login_max_failures_per_address=10,
        login_failure_window=60,
    )
    limiter = LoginRateLimiter.from_settings(settings, MemoryCache())
    assert (limiter._free, limiter._first_delay, limiter._max_delay, limiter._per_address, limiter._window) == (
        2,
        5,
        300,
        10,
        60,
    )
    assert [limiter.delay_after(n) for n in range(1, 8)] == [0, 0, 5, 10, 20, 40, 80]


async def test_an_abandoned_check_frees_the_turn(limiter, clock):
    await hammer(limiter, clock, 4)
    clock.now += await refused_for(limiter)
    attempt = await limiter.begin(account="ana@example.com", address=ATTACKER)
    assert attempt.holds_turn
    await limiter.abandoned(attempt)  # e.g. the store was down: no answer was given
    assert (await limiter.begin(account="ana@example.com", address=ATTACKER)).holds_turn

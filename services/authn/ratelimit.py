"""Login throttling: slow the attacker down, never lock the real user out.

The policy (docs/security.md), counted in the cache so every authn process
shares it (Redis, or the all-in-one mode's persistent SQLite cache):

- **Per account and address.** An email may fail `free_failures` times from one
  client address at no cost; each further failure makes that pair wait,
  `first_delay` seconds doubling per failure up to `max_delay`. Failures are
  remembered `window` seconds from the first; a success forgets them. No other
  pair is affected, so the real user logs in from their own address while an
  attacker hammers the same account from another.
- **Per address, across accounts.** An address may have `per_address` logins
  that did not succeed per window (fixed windows, aligned on multiples of
  `window`); then it is refused until the window ends, except on accounts it
  has logged into before (within `known_ttl`), so that colleagues behind the
  same NAT as an attacker keep working. IPv6 addresses count per /64, the
  block one subscriber usually holds.

Attempts are counted *before* the password is checked, so a burst of parallel
guesses cannot all slip in before the first failure is recorded: past its free
failures a pair has one attempt in flight at a time, and an address's attempts
in flight count against its budget until they succeed.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from shared.addresses import address_scope
from shared.cache import Cache
from shared.config import Settings

# Every key this module writes starts with it (services/authn/state.py keeps them across restarts).
KEY_PREFIX = "login-"
# How long a pair's single in-flight attempt holds its turn at most (a process dying mid-check frees it then).
TURN_TTL_S = 30.0
# A client refused because its previous attempt is still being checked may retry this soon.
BUSY_RETRY_AFTER_S = 1

throttled = Counter(
    "authn_logins_throttled_total", "Logins refused with 429 before the password was checked", ["reason"]
)


class RateLimited(Exception):
    """Too many failed logins; try again in `retry_after` seconds."""

    def __init__(self, retry_after: int, reason: str = "delay"):
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    pair: str  # "<account hash>:<address>"
    address: str
    attempts: int  # on this pair in its window, this one included
    window: int | None  # the address-budget window it was counted in; None for a known pair (not counted)
    holds_turn: bool


def account_scope(email: str) -> str:
    # Hashed so the cache never holds an email (it may be a shared Redis).
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class LoginRateLimiter:
    def __init__(
        self,
        cache: Cache,
        *,
        free_failures: int = 3,
        first_delay: float = 1.0,
        max_delay: float = 900.0,
        per_address: int = 30,
        window: float = 3600.0,
        known_ttl: float = 30 * 24 * 3600,
        clock: Callable[[], float] = time.time,
        namespace: str = "",
    ):
        # Other anonymous routes (password reset, invitation links) count in their own
        # namespace, so they neither spend nor are refused by the login budget.
        self._keys = KEY_PREFIX + namespace
        self._cache = cache
        self._free = free_failures
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._per_address = per_address
        self._window = window
        self._known_ttl = known_ttl
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, cache: Cache, *, namespace: str = "") -> LoginRateLimiter:
        return cls(
            cache,
            free_failures=settings.login_free_failures,
            first_delay=settings.login_first_delay,
            max_delay=settings.login_max_delay,
            per_address=settings.login_max_failures_per_address,
            window=settings.login_failure_window,
            known_ttl=settings.refresh_token_ttl,
            namespace=namespace,
        )

    def delay_after(self, attempts: int) -> float:
        """Seconds a pair waits after failing its `attempts`-th attempt (0 within the free failures)."""
        beyond = attempts - self._free
        if beyond <= 0:
            return 0.0
        return min(self._max_delay, self._first_delay * 2.0 ** min(beyond - 1, 64))

    async def begin(self, *, account: str, address: str) -> LoginAttempt:
        """Count a login attempt, or raise RateLimited when this pair or address must wait."""
        addr = address_scope(address)
        pair = f"{account_scope(account)}:{addr}"
        wait = await self._remaining(f"{self._keys}wait:{pair}")
        if wait:
            raise self._refused(wait, "delay")
        window = None
        if await self._cache.get(f"{self._keys}known:{pair}") is None:
            now = self._clock()
            window = int(now // self._window)
            begun = await self._cache.incr(f"{self._keys}address-begun:{addr}:{window}", ttl=self._window)
            succeeded = int(await self._cache.get(f"{self._keys}address-ok:{addr}:{window}") or 0)
            if begun - succeeded > self._per_address:
                raise self._refused(math.ceil((window + 1) * self._window - now), "address")
        attempts = await self._cache.incr(f"{self._keys}attempts:{pair}", ttl=self._window)
        if attempts > self._free:
            if not await self._cache.set_if_absent(f"{self._keys}turn:{pair}", b"1", ttl=TURN_TTL_S):
                raise self._refused(BUSY_RETRY_AFTER_S, "busy")
            return LoginAttempt(pair, addr, attempts, window, holds_turn=True)
        return LoginAttempt(pair, addr, attempts, window, holds_turn=False)

    async def failed(self, attempt: LoginAttempt) -> None:
        delay = self.delay_after(attempt.attempts)
        if delay:
            until = self._clock() + delay
            await self._cache.set(f"{self._keys}wait:{attempt.pair}", repr(until).encode(), ttl=delay)
        if attempt.holds_turn:  # after the wait is set, so no attempt slips in between
            await self._cache.delete(f"{self._keys}turn:{attempt.pair}")

    async def succeeded(self, attempt: LoginAttempt) -> None:
        await self._cache.delete(f"{self._keys}attempts:{attempt.pair}")
        if attempt.holds_turn:
            await self._cache.delete(f"{self._keys}turn:{attempt.pair}")
        if attempt.window is not None:  # give back the budget this attempt took
            await self._cache.incr(f"{self._keys}address-ok:{attempt.address}:{attempt.window}", ttl=self._window)
        await self._cache.set(f"{self._keys}known:{attempt.pair}", b"1", ttl=self._known_ttl)

    async def abandoned(self, attempt: LoginAttempt) -> None:
        """The password check did not finish: free the pair's turn and count nothing more."""
        if attempt.holds_turn:
            with contextlib.suppress(Exception):  # the error that abandoned the check is the one to report
                await self._cache.delete(f"{self._keys}turn:{attempt.pair}")

    @staticmethod
    def _refused(retry_after: int, reason: str) -> RateLimited:
        throttled.labels(reason).inc()
        return RateLimited(max(1, retry_after), reason)

    async def _remaining(self, key: str) -> int:
        """Whole seconds the wait stored under `key` still lasts; 0 when there is none."""
        raw = await self._cache.get(key)
        if raw is None:
            return 0
        remaining = float(raw) - self._clock()
        return max(1, math.ceil(remaining)) if remaining > 0 else 0

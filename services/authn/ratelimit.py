"""Failed-login limits per account and per client address, counted in the cache.

Reaching a limit locks that account (or address) for a whole window from the
failure that reached it; a locked login is refused before any password is
checked. A successful login clears the account's count but not the address's,
so one address cannot spray guesses over many accounts between its own logins.

Attempts on an account are counted *before* the password is checked: a burst
of concurrent guesses cannot all slip in before the first failure is recorded.
Addresses are counted on failure only, so that many users behind one NAT who
log in correctly never lock each other out.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.cache import Cache
from shared.config import Settings


class RateLimited(Exception):
    """Too many failed logins; try again in `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    account_scope: str
    address_scope: str
    account_attempts: int  # including this one


class LoginRateLimiter:
    def __init__(self, cache: Cache, *, per_account: int = 5, per_address: int = 20, window: float = 900,
                 clock: Callable[[], float] = time.time):
        self._cache = cache
        self._per_account = per_account
        self._per_address = per_address
        self._window = window
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, cache: Cache) -> LoginRateLimiter:
        return cls(cache, per_account=settings.login_max_failures_per_account,
                   per_address=settings.login_max_failures_per_address, window=settings.login_failure_window)

    async def begin(self, *, account: str, address: str) -> LoginAttempt:
        """Count a login attempt, or raise RateLimited when the account or the address is locked."""
        # Emails are hashed so the cache never holds them (it may be a shared Redis).
        account_scope = "account:" + hashlib.sha256(account.strip().lower().encode()).hexdigest()[:32]
        address_scope = f"address:{address}"
        waits = [wait for scope in (account_scope, address_scope) if (wait := await self._locked_for(scope))]
        if waits:
            raise RateLimited(max(waits))
        attempts = await self._cache.incr(f"login-count:{account_scope}", ttl=self._window)
        if attempts > self._per_account:
            # Concurrent attempts overtook the lock being set: refuse for a whole window.
            raise RateLimited(await self._locked_for(account_scope) or math.ceil(self._window))
        return LoginAttempt(account_scope, address_scope, attempts)

    async def failed(self, attempt: LoginAttempt) -> None:
        if attempt.account_attempts >= self._per_account:
            await self._lock(attempt.account_scope)
        failures = await self._cache.incr(f"login-count:{attempt.address_scope}", ttl=self._window)
        if failures >= self._per_address:
            await self._lock(attempt.address_scope)

    async def succeeded(self, attempt: LoginAttempt) -> None:
        await self._cache.delete(f"login-count:{attempt.account_scope}")

    async def _lock(self, scope: str) -> None:
        until = self._clock() + self._window
        await self._cache.set(f"login-locked:{scope}", repr(until).encode(), ttl=self._window)
        await self._cache.delete(f"login-count:{scope}")  # the lock now speaks; start afresh after it

    async def _locked_for(self, scope: str) -> int:
        """Whole seconds the scope stays locked; 0 when it is not."""
        raw = await self._cache.get(f"login-locked:{scope}")
        if raw is None:
            return 0
        remaining = float(raw) - self._clock()
        return max(1, math.ceil(remaining)) if remaining > 0 else 0

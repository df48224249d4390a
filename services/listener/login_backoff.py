"""Back-off for device logins with a wrong token, per IMEI and per source address.

A refused LOGIN still gets its LOGIN_ACK (status 2, or 1 for an unknown IMEI:
contract §1), but the listener then holds the connection, reading nothing
more, for a delay that doubles with each consecutive failure of that IMEI or
of that address, before closing it. A device looping on a stale token, or a
client guessing tokens one connection after another, slows down to one try
per delay; a held connection is still one without a login, so the login
timeout closes it at the latest.

What it never does is slow a right token: the delay applies only after a
refusal, and a correct LOGIN is not even looked up here. A reconnect storm of
legitimate devices behind one NAT address therefore logs in at full speed, and
so does a device whose IMEI someone else is failing on. Nor does a success
clear a count (they expire with the window): the device's own reconnects would
otherwise reset the count of whoever is guessing its token, and one good
device behind a NAT that of whoever fails beside it.

Counts live in the listener's cache, so listeners behind one load balancer
(sharing Redis) count the same failures; when the cache is unreachable they
fall back to this process's own counts, and logins go on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.cache import Cache
from shared.cache.memory import MemoryCache
from shared.config import Settings
from shared.logging import get_logger
from shared.protocols.xsole import LoginStatus

log = get_logger("solewatch.listener")
T = TypeVar("T")

IMEI_KEY = "device-login:failures:imei:{imei}"
ADDRESS_KEY = "device-login:failures:address:{address}"
HOLD_KEY = "device-login:hold:{imei}"  # MQTT: the topic's next LOGIN waits until this expires
FREE_FAILURES = 1  # one mistake (a token typed wrong at provisioning) is answered and closed at once


def worth_logging(failures: int) -> bool:
    """Whether the refusal that made `failures` consecutive failures gets a log line: the first
    few, then the 4th, 8th, 16th... (each line carries the count), so that a guessing client
    cannot fill the disk with lines; listener_logins_total counts every one."""
    return failures <= 3 or failures & (failures - 1) == 0


def backoff_delay(failures: int, *, base: float, ceiling: float) -> float:
    """Seconds to hold a refused connection after `failures` consecutive failures."""
    if failures <= FREE_FAILURES:
        return 0.0
    doublings: int = min(failures - FREE_FAILURES - 1, 32)
    return min(base * 2.0**doublings, ceiling)


class LoginBackoff:
    def __init__(self, cache: Cache | None, settings: Callable[[], Settings]):
        self._cache = cache
        self._local = MemoryCache()  # this process's counts, when there is no shared cache or it is down
        self._settings = settings  # a callable: the delays may change on reload

    async def refused(self, *, imei: str, address: str | None, status: LoginStatus) -> tuple[int, float]:
        """Count a refused LOGIN: (consecutive failures, seconds to hold its connection before closing it).

        A wrong token counts against the IMEI and the address; an unknown IMEI
        only against the address (counting random IMEIs would fill the cache);
        a disabled device (the right token) not at all.
        """
        settings = self._settings()
        keys = [ADDRESS_KEY.format(address=address)] if address and status is not LoginStatus.DISABLED else []
        if status is LoginStatus.BAD_TOKEN:
            keys.append(IMEI_KEY.format(imei=imei))
        if not keys or settings.device_login_backoff_max <= 0:
            return 0, 0.0
        window = settings.device_login_failure_window
        failures = max([await self._incr(key, window) for key in keys])
        return failures, backoff_delay(
            failures, base=settings.device_login_backoff, ceiling=settings.device_login_backoff_max
        )

    async def hold(self, imei: str, delay: float) -> None:
        """Over MQTT there is no connection to hold: the device's topic is held instead."""
        if delay > 0:
            await self._use(lambda cache: cache.set(HOLD_KEY.format(imei=imei), b"1", ttl=delay))

    async def held(self, imei: str) -> bool:
        return await self._use(lambda cache: cache.get(HOLD_KEY.format(imei=imei))) is not None

    async def _incr(self, key: str, window: float) -> int:
        return await self._use(lambda cache: cache.incr(key, ttl=window))

    async def _use(self, operation: Callable[[Cache], Awaitable[T]]) -> T:
        """`operation` on the shared cache, or on this process's counts when that fails."""
        if self._cache is not None:
            try:
                return await operation(self._cache)
            except Exception as exc:
                log.warning("login_backoff_cache_failed", error=str(exc))
        return await operation(self._local)

"""The cache of the distributed mode, on a Redis server (redis-py's asyncio client).

Redis holds short-lived state: sessions, rate limits, online marks. No frame or
alert lives only here (see shared/cache/port.py); sessions and revocations do, so
the deployment runs Redis with its append-only file (compose/compose.yml).

Keys are used as given: callers namespace them. Values are bytes both ways.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.cache.bucket import EPSILON, Allowance
from shared.cache.port import CacheUnavailable

P = ParamSpec("P")
T = TypeVar("T")
# A request waits this long at most for a Redis that is gone before answering 503.
CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 5.0

# INCR and the window's expiry in one step, so the window starts at the first
# increment and no crash between two commands can leave a counter that never expires.
_INCR_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
"""

# shared/cache/bucket.py's take_token in one step, on the server's clock (TIME), so
# that processes whose clocks disagree still share one bucket. Times are in seconds;
# floats go back as strings (Redis truncates Lua numbers to integers).
# ARGV: rate, burst, epsilon. Returns allowed (0/1), remaining, retry_after, full_after.
_TAKE_TOKEN = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local rate, burst, epsilon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local interval = 1 / rate
local start = tonumber(redis.call('GET', KEYS[1]) or now)
if start < now then
    start = now
end
local full_at = start + interval
local used = (full_at - now) * rate
if used > burst + epsilon then
    return {0, 0, tostring((used - burst) * interval), tostring(start - now)}
end
redis.call('SET', KEYS[1], string.format('%.17g', full_at), 'PX', math.ceil((full_at - now) * 1000))
return {1, math.floor(burst - used + epsilon), '0', tostring(full_at - now)}
"""


def _unavailable_when_unreachable(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise CacheUnavailable(f"redis unreachable: {exc}") from exc

    return call


def _milliseconds(ttl: float) -> int:
    # Rounded up, and at least 1 ms: a key may expire a little late, never early.
    return max(1, math.ceil(ttl * 1000))


class RedisCache:
    name = "cache"

    def __init__(self, url: str) -> None:
        self._url = url
        self._client: aioredis.Redis | None = None
        self._incr_script: AsyncScript | None = None
        self._take_token_script: AsyncScript | None = None

    async def start(self) -> None:
        client = aioredis.from_url(
            self._url,
            decode_responses=False,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
        )
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self._incr_script = client.register_script(_INCR_IN_WINDOW)
        self._take_token_script = client.register_script(_TAKE_TOKEN)

    async def reconnect(self, url: str) -> None:
        """Use the server at `url` from now on (SIGHUP with a new SOLEWATCH_REDIS_URL); a no-op for the same URL."""
        if url == self._url:
            return
        old, self._url = self._client, url
        await self.start()
        if old is not None:
            await old.aclose()

    async def close(self) -> None:
        client, self._client, self._incr_script, self._take_token_script = self._client, None, None, None
        if client is not None:
            await client.aclose()

    @property
    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("RedisCache is not started")
        return self._client

    @_unavailable_when_unreachable
    async def ping(self) -> None:
        await self._redis.ping()

    @_unavailable_when_unreachable
    async def get(self, key: str) -> bytes | None:
        # decode_responses=False: the client's str-or-bytes annotation is only bytes here.
        return cast(bytes | None, await self._redis.get(key))

    @_unavailable_when_unreachable
    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        return cast(list[bytes | None], await self._redis.mget(keys))

    @_unavailable_when_unreachable
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._redis.set(key, value, px=None if ttl is None else _milliseconds(ttl))

    @_unavailable_when_unreachable
    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        done = await self._redis.set(key, value, nx=True, px=None if ttl is None else _milliseconds(ttl))
        return bool(done)

    @_unavailable_when_unreachable
    async def delete(self, key: str) -> None:
        await self._redis.delete(key)

    @_unavailable_when_unreachable
    async def incr(self, key: str, *, ttl: float) -> int:
        if self._incr_script is None:
            raise RuntimeError("RedisCache is not started")
        return int(await self._incr_script(keys=[key], args=[_milliseconds(ttl)]))

    @_unavailable_when_unreachable
    async def take_token(self, key: str, *, rate: float, burst: int) -> Allowance:
        if rate <= 0 or burst < 1:
            raise ValueError("a bucket needs a positive rate and a burst of at least 1")
        if self._take_token_script is None:
            raise RuntimeError("RedisCache is not started")
        allowed, remaining, retry_after, full_after = await self._take_token_script(
            keys=[key], args=[repr(float(rate)), burst, repr(EPSILON)]
        )
        return Allowance(bool(allowed), int(remaining), float(retry_after), float(full_after))

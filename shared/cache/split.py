"""One cache over two adapters, chosen by key prefix.

The all-in-one mode needs two kinds of cache state: hot-path marks (device
online, detection state, the outbox lease) that must stay as fast as a dict,
and state a restart must not lose (sessions, revocations, login throttling).
Callers keep one Cache and their own key names; this routes every key whose
name starts with one of `durable_prefixes` to the durable adapter.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.cache.bucket import Allowance
from shared.cache.port import Cache


class SplitCache:
    name = "cache"

    def __init__(self, *, fast: Cache, durable: Cache, durable_prefixes: Iterable[str]) -> None:
        self.fast = fast
        self.durable = durable
        self._prefixes = tuple(durable_prefixes)
        if not self._prefixes or not all(self._prefixes):
            raise ValueError("durable_prefixes needs at least one non-empty prefix")

    def adapter_for(self, key: str) -> Cache:
        return self.durable if key.startswith(self._prefixes) else self.fast

    async def start(self) -> None:
        await self.durable.start()
        try:
            await self.fast.start()
        except BaseException:
            await self.durable.close()
            raise

    async def close(self) -> None:
        try:
            await self.fast.close()
        finally:
            await self.durable.close()

    async def ping(self) -> None:
        await self.durable.ping()
        await self.fast.ping()

    async def get(self, key: str) -> bytes | None:
        return await self.adapter_for(key).get(key)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        durable = [key.startswith(self._prefixes) for key in keys]
        from_durable = iter(await self.durable.get_many([k for k, d in zip(keys, durable, strict=True) if d]))
        from_fast = iter(await self.fast.get_many([k for k, d in zip(keys, durable, strict=True) if not d]))
        return [next(from_durable) if d else next(from_fast) for d in durable]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self.adapter_for(key).set(key, value, ttl=ttl)

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        return await self.adapter_for(key).set_if_absent(key, value, ttl=ttl)

    async def delete(self, key: str) -> None:
        await self.adapter_for(key).delete(key)

    async def incr(self, key: str, *, ttl: float) -> int:
        return await self.adapter_for(key).incr(key, ttl=ttl)

    async def take_token(self, key: str, *, rate: float, burst: int) -> Allowance:
        return await self.adapter_for(key).take_token(key, rate=rate, burst=burst)

"""The in-process cache of the all-in-one mode: a dict with expiry times."""

from __future__ import annotations

import time

from shared.cache.bucket import Allowance, take_token


class MemoryCache:
    name = "cache"

    def __init__(self) -> None:
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._clock = time.monotonic
        self._writes = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._values.clear()

    async def ping(self) -> None:
        pass

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        entry = self._values.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= self._clock():
            del self._values[key]
            return None
        return entry

    def _store(self, key: str, value: bytes, ttl: float | None) -> None:
        self._values[key] = (value, None if ttl is None else self._clock() + ttl)
        self._writes += 1
        if self._writes % 10_000 == 0:
            self._sweep()

    def _sweep(self) -> None:
        # Expired keys nobody reads again would otherwise stay forever.
        now = self._clock()
        for key in [k for k, (_, expires) in self._values.items() if expires is not None and expires <= now]:
            del self._values[key]

    async def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        return None if entry is None else entry[0]

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [None if (entry := self._live(key)) is None else entry[0] for key in keys]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._store(key, value, ttl)

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        if self._live(key) is not None:
            return False
        self._store(key, value, ttl)
        return True

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def incr(self, key: str, *, ttl: float) -> int:
        entry = self._live(key)
        if entry is None:
            self._store(key, b"1", ttl)
            return 1
        count = int(entry[0]) + 1
        self._values[key] = (str(count).encode(), entry[1])
        return count

    async def take_token(self, key: str, *, rate: float, burst: int) -> Allowance:
        entry = self._live(key)
        now = self._clock()
        allowance, full_at = take_token(None if entry is None else float(entry[0]), now, rate=rate, burst=burst)
        if full_at is not None:  # the key goes when the bucket is full again: a missing key is a full bucket
            self._store(key, repr(full_at).encode(), full_at - now)
        return allowance

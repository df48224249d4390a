"""What solewatch keeps in a cache: short-lived state shared between processes.

Nothing here may be the only copy of a frame or an alert. Sessions, revocations
and login throttling do live only here, so the adapters that hold them keep them
across a restart of solewatch's processes: Redis with its append-only file, and
in the all-in-one mode the SQLite cache (services/authn/state.py).
"""

from __future__ import annotations

from typing import Protocol

from shared.cache.bucket import Allowance


class CacheUnavailable(ConnectionError):
    """The cache server cannot be reached; callers answer "retry later", never crash."""


class Cache(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise when the cache cannot serve."""

    async def get(self, key: str) -> bytes | None: ...
    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """The values of `keys`, in their order (None where absent), in one round trip."""

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None: ...
    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """Set only when the key does not exist; True when this call set it."""

    async def delete(self, key: str) -> None: ...
    async def incr(self, key: str, *, ttl: float) -> int:
        """Add one and return the new count; the key expires `ttl` seconds after its first increment."""

    async def take_token(self, key: str, *, rate: float, burst: int) -> Allowance:
        """Take one token from the bucket under `key` (at most `burst` tokens, refilled at `rate` a second;
        shared/cache/bucket.py), atomically for every process sharing this cache. A refused take costs nothing."""

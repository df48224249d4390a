"""The cache port (sessions, rate limits, device state) and its adapters: memory, SQLite, Redis, split."""

from shared.cache.bucket import Allowance
from shared.cache.port import Cache, CacheUnavailable

__all__ = ["Allowance", "Cache", "CacheUnavailable"]

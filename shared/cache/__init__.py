"""The cache port (sessions, rate limits, device state) and its adapters: memory, SQLite, Redis, split."""

from shared.cache.port import Cache, CacheUnavailable

__all__ = ["Cache", "CacheUnavailable"]

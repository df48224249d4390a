"""The cache port (sessions, rate limits, device state) and its adapters."""

from shared.cache.port import Cache, CacheUnavailable

__all__ = ["Cache", "CacheUnavailable"]

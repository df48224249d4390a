"""Where authn state lives in the all-in-one mode: in a cache that survives a restart.

Sessions, refresh tokens, revocations and login throttling must outlive a
restart of `solewatch run` as they outlive a restart of any process on the
distributed mode's Redis: otherwise a restart signs everyone out, brings
logged-out access tokens back to life and forgets every delay an attacker
earned. Their keys go to a SQLite file of their own in the data directory
(not the store's database: logins never wait behind a group commit of frames);
every other key (online marks, detection state, leases) stays in memory.
"""

from __future__ import annotations

from services.authn import ratelimit, tokens
from shared.cache.memory import MemoryCache
from shared.cache.split import SplitCache
from shared.cache.sqlite import SqliteCache
from shared.config import Settings

STATE_FILE = "authn-state.db"
KEY_PREFIXES = (*tokens.KEY_PREFIXES, ratelimit.KEY_PREFIX)


def embedded_cache(settings: Settings) -> SplitCache:
    """The all-in-one mode's cache: authn keys persisted in `<data_dir>/authn-state.db`, the rest in memory."""
    return SplitCache(
        fast=MemoryCache(), durable=SqliteCache(settings.data_dir / STATE_FILE), durable_prefixes=KEY_PREFIXES
    )

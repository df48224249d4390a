"""SQLite adapter, account half: tenants, users, API keys (a mixin of SqliteStore)."""

from __future__ import annotations


class SqliteAccounts:
    SCHEMA = ""

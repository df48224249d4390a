"""SQLite adapter, alerting half: alerts, timeline, contacts, notifications (a mixin of SqliteStore)."""

from __future__ import annotations


class SqliteAlerts:
    SCHEMA = ""

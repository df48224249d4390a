"""SQLite adapter, geofences and per-device settings (the DetectionConfigStore port), composed."""

from __future__ import annotations

from shared.store.sqlite_device_settings import SqliteDeviceSettings
from shared.store.sqlite_geofences import SqliteGeofences


class SqliteDetectionConfig(SqliteGeofences, SqliteDeviceSettings):
    SCHEMA = SqliteGeofences.SCHEMA + SqliteDeviceSettings.SCHEMA

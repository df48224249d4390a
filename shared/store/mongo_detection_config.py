"""MongoDB adapter, geofences and per-device settings (the DetectionConfigStore port), composed."""

from __future__ import annotations

from typing import ClassVar

from pymongo import IndexModel

from shared.store.mongo_device_settings import MongoDeviceSettings
from shared.store.mongo_geofences import MongoGeofences


class MongoDetectionConfig(MongoGeofences, MongoDeviceSettings):
    # device_settings needs none beyond its _id (the device's).
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = MongoGeofences.INDEXES

"""Geofences and per-device settings: what the detectors watch for, as the API configured it.

The sub-ports are in geofences.py and device_settings.py.
"""

from __future__ import annotations

from typing import Protocol

from shared.store.device_settings import DeviceSettingsStore
from shared.store.geofences import GeofenceStore


class DetectionConfigStore(GeofenceStore, DeviceSettingsStore, Protocol):
    """Geofences and per-device detection settings."""

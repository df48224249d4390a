"""The storage ports (one per domain, see port.py) and their adapters (SQLite embedded; MongoDB for
the distributed mode)."""

from shared.store.accounts import AccountStore
from shared.store.alerting import AlertingStore
from shared.store.detection_config import DetectionConfigStore
from shared.store.devices import (
    CommandRecord,
    Device,
    DeviceExists,
    DeviceStore,
    command_status,
    hash_device_token,
    token_matches,
)
from shared.store.outbox import OutboxEntry, OutboxStore
from shared.store.port import (
    ApiStore,
    ListenerStore,
    NotificationsStore,
    Store,
    StoreLifecycle,
    StoreUnavailable,
)
from shared.store.telemetry import FrameRecord, StoredPosition, TelemetryHistory, TelemetryStore

__all__ = [
    "AccountStore",
    "AlertingStore",
    "ApiStore",
    "CommandRecord",
    "DetectionConfigStore",
    "Device",
    "DeviceExists",
    "DeviceStore",
    "FrameRecord",
    "ListenerStore",
    "NotificationsStore",
    "OutboxEntry",
    "OutboxStore",
    "Store",
    "StoreLifecycle",
    "StoreUnavailable",
    "StoredPosition",
    "TelemetryHistory",
    "TelemetryStore",
    "command_status",
    "hash_device_token",
    "token_matches",
]

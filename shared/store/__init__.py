"""The storage port and its adapters (SQLite embedded; MongoDB for the distributed mode)."""

from shared.store.port import (
    CommandRecord,
    Device,
    DeviceExists,
    FrameRecord,
    OutboxEntry,
    Store,
    StoreUnavailable,
    hash_device_token,
    token_matches,
)

__all__ = [
    "CommandRecord",
    "Device",
    "DeviceExists",
    "FrameRecord",
    "OutboxEntry",
    "Store",
    "StoreUnavailable",
    "hash_device_token",
    "token_matches",
]

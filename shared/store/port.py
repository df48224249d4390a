"""What solewatch needs from storage, whatever engine holds it: one port per domain,
and the compositions each service names.

| port | module | what |
|---|---|---|
| `DeviceStore` | devices.py | devices and their downlink commands |
| `TelemetryStore` | telemetry.py | frames committed and read back (`PositionHistory`, `FrameHistory`) |
| `AccountStore` | accounts.py | tenants, users, API keys |
| `AlertingStore` | alerting.py | alerts, notifications, escalation, detections, push, SMS replies |
| `DetectionConfigStore` | detection_config.py | geofences and per-device settings |
| `OutboxStore` | outbox.py | messages waiting for the relay |
| `AuditStore` | audit.py | the append-only audit log (changes write their entry with them) |
| `WebhookStore` | webhooks.py | partner webhook endpoints and the deliveries owed to them |
| `WebhookPositionsStore` | webhook_positions.py | positions owed to webhook endpoints, batched into deliveries |
| `TenantSettingsStore` | tenant_settings.py | a tenant's retention periods and location visibility |
| `RetentionStore` | retention.py | deleting what is past its tenant's retention, a chunk at a time |
| `ReportStore` | reports.py | each device's report figures per hour, kept up to date as frames arrive |

Each adapter (SQLite, MongoDB) is one class composed of one mixin per port and
offers them all (`Store`); a service names only what it uses, so its
dependencies read from its signature. Every write is idempotent where a device
or a bus may deliver twice.
"""

from __future__ import annotations

from typing import Protocol

from shared.store.accounts import AccountStore
from shared.store.alerting import AlertingStore
from shared.store.audit import AuditStore
from shared.store.detection_config import DetectionConfigStore
from shared.store.devices import CommandRecord as CommandRecord
from shared.store.devices import Device as Device
from shared.store.devices import DeviceExists as DeviceExists
from shared.store.devices import DeviceStore
from shared.store.devices import hash_device_token as hash_device_token
from shared.store.devices import token_matches as token_matches
from shared.store.outbox import OutboxEntry as OutboxEntry
from shared.store.outbox import OutboxStore
from shared.store.reports import ReportStore
from shared.store.retention import RetentionStore
from shared.store.telemetry import FrameHistory, TelemetryStore
from shared.store.telemetry import FrameRecord as FrameRecord
from shared.store.tenant_settings import TenantSettingsStore
from shared.store.webhook_positions import WebhookPositionsStore
from shared.store.webhooks import WebhookStore


class StoreUnavailable(Exception):
    """The storage engine cannot be reached or refused the write; retry the whole call."""


class StoreLifecycle(Protocol):
    async def open(self) -> None:
        """Connect, and create what is missing (tables, collections, indexes); running it again changes nothing."""

    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise StoreUnavailable when the engine cannot serve."""


# -- what each service uses ------------------------------------------------------------


class ListenerStore(DeviceStore, TelemetryStore, Protocol):
    """The listener: logins look devices up, commits store frames, commands go down."""


class NotificationsStore(
    AccountStore,
    DeviceStore,
    AlertingStore,
    DetectionConfigStore,
    AuditStore,
    WebhookStore,
    WebhookPositionsStore,
    ReportStore,
    Protocol,
):
    """The notifications service: alarms to alerts, detections, who is told and how, partner webhooks."""


class ApiStore(
    AccountStore,
    DeviceStore,
    FrameHistory,  # positions only through the context's `positions` (services/visibility: CONTRACT §8)
    AlertingStore,
    DetectionConfigStore,
    AuditStore,
    WebhookStore,
    WebhookPositionsStore,  # the notifications service shares the API's context
    TenantSettingsStore,
    RetentionStore,
    ReportStore,
    Protocol,
):
    """The REST API and what shares its ServiceContext (the notifications service uses a part)."""


# The storage writer names TelemetryStore, the outbox relay OutboxStore.


class Store(
    StoreLifecycle,
    AccountStore,
    DeviceStore,
    TelemetryStore,
    OutboxStore,
    AlertingStore,
    DetectionConfigStore,
    AuditStore,
    WebhookStore,
    WebhookPositionsStore,
    TenantSettingsStore,
    RetentionStore,
    ReportStore,
    Protocol,
):
    """Every port, as one adapter offers them: for the wiring that builds, opens and hands it out."""

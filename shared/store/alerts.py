"""Alerts, their timeline, contacts and notification records: the port's alerting half.

Every change to an alert is written together with an outbox message on the
`alert` topic, so dashboards and notifiers hear of it exactly as stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from shared.bus.topics import TOPIC_ALERT as TOPIC_ALERT  # re-exported for the store adapters
from shared.store.audit import AuditEntry

AlertStatus = Literal["open", "acknowledged", "resolved"]
ALERT_KINDS = (
    "sos",
    "fall",
    "no_motion",
    "low_battery",
    "off_foot",
    "tamper",
    "offline",
    "geofence_exit",
    "geofence_enter",
)


# Where a provider's delivery status ends: nothing after these is news (delivered, then a late `sent`).
# A call ends completed, busy, no-answer, failed or canceled (Twilio's CallStatus).
FINAL_DELIVERY_STATUSES = frozenset(
    {"delivered", "undelivered", "failed", "read", "canceled", "completed", "busy", "no-answer"}
)


def delivery_status_is_news(previous: str | None, status: str) -> bool:
    """Whether a delivery status callback changes what is known of a notification."""
    if previous == status:
        return False
    return previous not in FINAL_DELIVERY_STATUSES or status in FINAL_DELIVERY_STATUSES


def delivery_status_detail(
    *, provider_id: str, status: str, error_code: str | None, channel: str, contact_id: int, contact: str | None
) -> dict[str, Any]:
    """The detail of a `delivery_status` timeline line."""
    detail: dict[str, Any] = {
        "status": status,
        "channel": channel,
        "contact_id": contact_id,
        "provider_id": provider_id,
    }
    if contact is not None:
        detail["contact"] = contact
    if error_code:
        detail["error_code"] = error_code
    return detail


class AlertTransitionRefused(Exception):
    """The alert is not in a status that allows this change (acknowledging a resolved alert)."""


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    tenant_id: int
    device_id: int
    imei: str
    kind: str
    ts: int  # when it happened, unix seconds (device time for alarms)
    lat: float | None
    lon: float | None
    battery: int | None
    status: AlertStatus
    created_at: float
    alarm_id: int | None = None  # the ALARM frame it came from, when it did
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    resolution_note: str | None = None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One line of an alert's timeline."""

    alert_id: int
    at: float
    action: str  # raised, notified, notification_failed, acknowledged, resolved...
    actor: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Contact:
    id: int
    tenant_id: int
    name: str
    email: str | None
    phone: str | None  # E.164
    kinds: tuple[str, ...]
    created_at: float


class AlertStore(Protocol):
    async def raise_alert_from_alarm(self, alarm: dict[str, Any]) -> tuple[Alert, bool]:
        """The alert for an `alarm` bus message; (alert, True) only the first time for that alarm."""

    async def alert(self, tenant_id: int, alert_id: int) -> Alert | None: ...
    async def alerts(
        self,
        tenant_id: int,
        *,
        status: AlertStatus | None = None,
        imei: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Alert]:
        """Newest first; `before_id` is the cursor (ids below it)."""

    async def alerts_overlapping(
        self, device_ids: Sequence[int], *, start: float | None = None, end: float | None = None
    ) -> list[Alert]:
        """The devices' alerts whose time overlaps [start, end] (None: unbounded), oldest first: raised
        (`ts`) at or before `end`, and not resolved before `start` (open and acknowledged ones whatever
        `start`). What location visibility needs to know which positions an alert lets be seen."""

    async def alerts_raised(
        self, tenant_id: int, *, since: float, until: float, device_id: int | None = None
    ) -> list[Alert]:
        """The tenant's alerts whose `ts` (when it happened) is in [since, until), oldest first
        (optionally one device's). Bounded by the range, not loaded whole. As `alerts()`, a retired
        device's alerts stay the tenant's: a report over a past range still counts them."""

    async def alert_escalations(self, alert_ids: Sequence[int]) -> dict[int, int]:
        """For each alert id that escalated, how many `escalated` timeline lines it has
        (alerts that never escalated are left out)."""

    async def acknowledge_alert(
        self,
        tenant_id: int,
        alert_id: int,
        *,
        by: str,
        detail: dict[str, Any] | None = None,
        audit: AuditEntry | None = None,
    ) -> Alert | None:
        """None when there is no such alert in the tenant; AlertTransitionRefused when resolved.
        `detail` goes on the `acknowledged` timeline line: how (`via`) and, for a contact, who.
        `audit` is written with the change, and only when the status changes (not for a repeat)."""

    async def resolve_alert(
        self, tenant_id: int, alert_id: int, *, by: str, note: str | None = None, audit: AuditEntry | None = None
    ) -> Alert | None:
        """As acknowledge_alert; resolving a resolved alert changes nothing and writes no entry."""

    async def alert_timeline(self, tenant_id: int, alert_id: int) -> list[AlertEvent]: ...
    async def add_alert_event(
        self, alert_id: int, *, action: str, actor: str | None, detail: dict[str, Any]
    ) -> None: ...

    async def add_contact(
        self,
        *,
        tenant_id: int,
        name: str,
        email: str | None,
        phone: str | None,
        kinds: tuple[str, ...],
        audit: AuditEntry | None = None,
    ) -> Contact:
        """`audit` (its target id left None) is written with the contact, naming its new id."""

    async def contacts(self, tenant_id: int) -> list[Contact]: ...
    async def delete_contact(self, tenant_id: int, contact_id: int, *, audit: AuditEntry | None = None) -> bool: ...

    async def claim_notification(self, *, alert_id: int, contact_id: int, channel: str, step: int) -> bool:
        """Exactly-once key: True for the one caller that should send this notification."""

    async def finish_notification(
        self,
        *,
        alert_id: int,
        contact_id: int,
        channel: str,
        step: int,
        status: str,
        attempts: int,
        error: str | None = None,
        provider_id: str | None = None,
    ) -> None:
        """Record where a notification stands; `provider_id` is the provider's id of what was sent
        (a Twilio message SID), for its delivery status callbacks."""

    async def record_delivery_status(self, *, provider_id: str, status: str, error_code: str | None) -> int | None:
        """A provider's news of a notification it took (`delivered`, `undelivered`...): stored with
        a `delivery_status` timeline line; the alert's id, or None for an unknown provider id.
        The status already known, or an interim one after a final one (callbacks may arrive late
        or twice), changes nothing."""

"""Webhook events (CONTRACT §7): their types, ids and bodies, the same whoever makes them.

An event is made where its change is stored (an alert's change, a command's
answer) or heard (a device coming online), and owed to every endpoint of its
tenant subscribed to its type in the same write as far as the store allows
(shared/store/*_webhooks.py `owe_webhook_event`). Its body is made once, then,
and stored with each delivery: every attempt sends the same bytes.

Events announcing a change take an id derived from what changed, so whoever
announces it again (a redelivered bus message, a MongoDB announcement finished
after a restart) owes the same event, which the store then ignores.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, Literal, get_args

import orjson

from shared.alerts import iso_utc
from shared.protocols.xsole.command_args import command_name
from shared.store.devices import CommandRecord, command_status
from shared.store.webhooks import WebhookEvent

EventType = Literal[
    "alert.raised",
    "alert.acknowledged",
    "alert.resolved",
    "alert.escalated",
    "device.online",
    "device.offline",
    "command.completed",
    "positions",
    "ping",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
# The alert changes (shared/store/*_alerts.py) and the events that announce them, with the alert's
# field that says when the change happened.
ALERT_CHANGES = {
    "created": ("alert.raised", "created_at"),
    "acknowledged": ("alert.acknowledged", "acknowledged_at"),
    "resolved": ("alert.resolved", "resolved_at"),
}
_COMMAND_API_STATUS = {"pending": "queued"}  # the store's word for a command not sent yet


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


def derived_event_id(*key: object) -> str:
    """The id of the event announcing a stored change, the same whoever derives it and when."""
    digest = hashlib.sha256(":".join(map(str, key)).encode()).hexdigest()
    return f"evt_{digest[:24]}"


def event_body(event_id: str, type: str, created_at: str, data: dict[str, Any]) -> bytes:
    """The JSON every attempt posts; `created_at` is ISO-8601 UTC, as the REST API writes times."""
    return orjson.dumps({"id": event_id, "type": type, "created_at": created_at, "data": data})


def _event(
    tenant_id: int, type: str, event_id: str, at: float, data: dict[str, Any], imei: str | None = None
) -> WebhookEvent:
    body = event_body(event_id, type, iso_utc(at, millis=True) or "", data)
    return WebhookEvent(tenant_id, type, event_id, body, imei)


def alert_change_event(tenant_id: int, change: str, alert: dict[str, Any]) -> WebhookEvent | None:
    """The event announcing an alert change (`alert` in the REST shape), None for a change partners
    are not told of."""
    if change not in ALERT_CHANGES:
        return None
    type_, happened = ALERT_CHANGES[change]
    event_id = derived_event_id("alert", alert["id"], change)
    body = event_body(event_id, type_, alert.get(happened) or alert["created_at"], alert)
    return WebhookEvent(tenant_id, type_, event_id, body, alert["imei"])


def alert_escalated_event(tenant_id: int, alert: dict[str, Any], *, step: int, at: float) -> WebhookEvent:
    """An escalation step taken: the alert in the REST shape, with the step's number."""
    event_id = derived_event_id("alert", alert["id"], "escalated", step)
    return _event(tenant_id, "alert.escalated", event_id, at, {**alert, "escalation_step": step}, alert["imei"])


def device_status_event(status: dict[str, Any], *, key: str, at: float) -> WebhookEvent:
    """A device came online or went offline: the live status dashboards get (CONTRACT §3
    `device_status`); `key` names this one change (the bus message's id)."""
    type_ = "device.online" if status["online"] else "device.offline"
    data = {name: status.get(name) for name in ("imei", "online", "battery", "last_seen")}
    return _event(status["tenant_id"], type_, derived_event_id("device", key), at, data, status["imei"])


def command_to_api(command: CommandRecord, now: float) -> dict[str, Any]:
    """A downlink command as the REST API shows it (CONTRACT §5)."""
    status = command_status(command, now)
    return {
        "id": command.id,
        "command": command_name(command.cmd),
        "args": command.args.hex(),
        "status": _COMMAND_API_STATUS.get(status, status),
        "created_at": iso_utc(command.created_at, millis=True),
        "sent_at": iso_utc(command.sent_at, millis=True),
        "completed_at": iso_utc(command.completed_at, millis=True),
    }


def command_completed_event(tenant_id: int, command: CommandRecord, now: float) -> WebhookEvent:
    """A device answered a command (done, failed or unsupported): the command in the REST shape,
    with the device's IMEI."""
    data = {**command_to_api(command, now), "imei": command.imei}
    event_id = derived_event_id("command", command.id, command.status)
    return _event(tenant_id, "command.completed", event_id, now, data, command.imei)


def ping_event(tenant_id: int, endpoint_id: int, now: float) -> WebhookEvent:
    """A new ping for one endpoint (each ping is an event of its own)."""
    return _event(tenant_id, "ping", new_event_id(), now, {"endpoint_id": endpoint_id})

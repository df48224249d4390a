"""Webhook events (CONTRACT §7): their types, ids and bodies.

An event's body is made once, when it is queued, and stored with its delivery:
every attempt sends the same bytes. Events derived from something stored (an
alert change) take an id derived from it, so hearing the same bus message twice,
or after a restart, queues the same event, which the store then ignores.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import orjson

from shared.alerts import iso_utc

EVENT_TYPES = (
    "alert.raised",
    "alert.acknowledged",
    "alert.resolved",
    "alert.escalated",
    "device.online",
    "device.offline",
    "command.completed",
    "positions",
    "ping",
)
# The alert messages' changes (shared/store/*_alerts.py) and the events they become.
ALERT_EVENTS = {"created": "alert.raised", "acknowledged": "alert.acknowledged", "resolved": "alert.resolved"}


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


def derived_event_id(*key: object) -> str:
    """The id of the event announcing a stored change, the same whoever derives it and when."""
    digest = hashlib.sha256(":".join(map(str, key)).encode()).hexdigest()
    return f"evt_{digest[:24]}"


def event_body(event_id: str, type: str, created_at: str, data: dict[str, Any]) -> bytes:
    """The JSON every attempt posts; `created_at` is ISO-8601 UTC, as the REST API writes times."""
    return orjson.dumps({"id": event_id, "type": type, "created_at": created_at, "data": data})


def ping_body(endpoint_id: int, now: float) -> tuple[str, bytes]:
    """A new ping event for an endpoint: its id and body."""
    event_id = new_event_id()
    return event_id, event_body(event_id, "ping", iso_utc(now, millis=True) or "", {"endpoint_id": endpoint_id})

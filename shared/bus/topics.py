"""The bus topics, and the consumers every deployment has.

Known consumers get their queues declared by whichever service starts first
(see shared/bus/amqp_topology.py), so nothing published to them is dropped
because their own service has not started yet.
"""

from __future__ import annotations

TOPIC_TELEMETRY = "telemetry"  # one commit's newest position, heartbeat and activity of each device
TOPIC_ALARM = "alarm"  # one newly stored ALARM frame
TOPIC_ALERT = "alert"  # an alert raised, acknowledged or resolved
TOPIC_DEVICE_STATUS = "device_status"  # a device came online or went offline
TOPIC_INGEST = "ingest"  # distributed mode: frames a listener has ACKed, for the storage writer
TOPIC_COMMAND = "command"  # distributed mode: a command was queued for a device (a wake-up for its listener)
TOPIC_DEVICE_REVOKED = "device_revoked"  # distributed mode: a device was disabled, re-keyed or retired

ALERT_TOPICS = frozenset({TOPIC_ALARM, TOPIC_ALERT})

KNOWN_CONSUMERS: dict[str, list[str]] = {
    "store-writer": [TOPIC_INGEST],
    "alert-engine": [TOPIC_ALARM],
    "notification-dispatcher": [TOPIC_ALERT],
    "push-notifier": [TOPIC_ALERT],
    "detectors": [TOPIC_TELEMETRY],
    "wss-positions": [TOPIC_TELEMETRY],
    "webhook-positions": [TOPIC_TELEMETRY],
    "wss-alerts": [TOPIC_ALERT],
    "wss-device-status": [TOPIC_DEVICE_STATUS],
    "webhook-events": [TOPIC_DEVICE_STATUS],
}

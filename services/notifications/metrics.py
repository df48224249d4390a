"""Prometheus metrics of the notifications service: outages show here, not in readiness."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

notifications_sent = Counter("notifications_sent_total", "Notifications delivered", ["channel"])
notifications_failed = Counter(
    "notifications_failed_total", "Notifications given up on after every attempt", ["channel"]
)
notification_attempts = Counter(
    "notification_attempts_total",
    "Send attempts by outcome (sent, transient_error, permanent_error)",
    ["channel", "outcome"],
)
notification_seconds = Histogram(
    "notification_seconds",
    "Duration of one send attempt",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
notifications_in_flight = Gauge("notifications_in_flight", "Notifications being sent or waiting to retry")
notifications_redriven = Counter(
    "notifications_redriven_total",
    "Notifications taken over after their sender stopped or died",
    ["channel"],
)

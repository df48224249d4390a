"""Alerts and notifications: alarms become alerts, alerts reach the people who must know."""

from services.notifications.actions import acknowledge_alert, resolve_alert
from services.notifications.notifier import AlertNotice, NotificationFailed, Notifier
from services.notifications.service import NotificationsService, build_notifiers

__all__ = [
    "AlertNotice",
    "NotificationFailed",
    "NotificationsService",
    "Notifier",
    "acknowledge_alert",
    "build_notifiers",
    "resolve_alert",
]

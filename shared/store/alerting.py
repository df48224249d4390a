"""Alerts and notifications, the port the alert engine, notifiers and alert API share.

Composed of the alerting sub-ports, each in its module: alerts, their
timeline, contacts and notification records (alerts.py, with the recovery
of unfinished notifications in shared/alerts/ledger.py), escalation
(escalation.py), alerts the server detects itself (detections.py), Web Push
subscriptions (push.py), SMS reply codes (sms_replies.py) and the weekly
digest's claims (digest.py).
"""

from __future__ import annotations

from typing import Protocol

from shared.alerts.ledger import NotificationRecovery
from shared.store.alerts import AlertStore
from shared.store.detections import DetectionStore
from shared.store.digest import DigestStore
from shared.store.escalation import EscalationStore
from shared.store.push import PushStore
from shared.store.sms_replies import SmsReplyStore


class AlertingStore(
    AlertStore,
    NotificationRecovery,
    EscalationStore,
    DetectionStore,
    PushStore,
    SmsReplyStore,
    DigestStore,
    Protocol,
):
    """Alerts, notifications and everything that decides who is told."""

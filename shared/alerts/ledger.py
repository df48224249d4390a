"""Bookkeeping of notifications: who was told what about which alert, exactly once.

A notification is keyed by (alert, contact, channel, step). The sender claims
the key first (`AlertStore.claim_notification`); only the claimer sends. A claim
then ends as `sent` or `failed`, or stays `claimed` while attempts go on (each
attempt touches it). A process that dies mid-send leaves its claim behind:
`NotificationRecovery` finds such claims and lets exactly one process take them
over, so a crash delays a notification instead of losing it. The price is
at-least-once for that one notification: an email may have left just before
the crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, runtime_checkable

NotificationStatus = Literal["claimed", "sent", "failed", "interrupted", "cancelled"]
# claimed: being sent (or its sender died); sent, failed: final outcomes;
# interrupted: the sender stopped before the end (drain) and hands it to the next start;
# cancelled: given up without sending (alert resolved, contact deleted meanwhile).

# contact_id of a notification sent to the alert's own device (COMMAND alarm-acknowledged):
# the ledger makes that command exactly-once too. Store ids start at 1.
DEVICE_RECIPIENT = 0
CHANNEL_DEVICE = "device"


class NotificationKey(NamedTuple):
    """What is sent once: `store.claim_notification(**key._asdict())`."""

    alert_id: int
    contact_id: int
    channel: str
    step: int


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    alert_id: int
    tenant_id: int
    contact_id: int
    channel: str
    step: int
    status: str
    attempts: int
    error: str | None
    updated_at: float


@runtime_checkable
class NotificationRecovery(Protocol):
    """What a store offers, beyond AlertStore, to re-drive notifications left unfinished."""

    async def unfinished_notifications(self, *, stale_before: float, limit: int = 100) -> list[NotificationRecord]:
        """`interrupted` notifications, and `claimed` ones not touched since `stale_before`, oldest first."""

    async def reclaim_notification(self, record: NotificationRecord) -> bool:
        """Take over a notification listed as unfinished, if it is still exactly as listed;
        True for the one caller that should send it again."""

    async def notifications_of(self, tenant_id: int, alert_id: int) -> list[NotificationRecord]:
        """Every notification of an alert, in claim order."""

"""Web Push: the browsers that asked to be told of new alerts, and the server's VAPID key.

A subscription is what a browser's PushManager gave the signed-in user: the
push service's endpoint (unique: one browser profile, one endpoint) and the
keys its messages are encrypted to (RFC 8291). The VAPID key pair signs every
push (RFC 8292); unless configured, it is made once and kept here so every
process, and every restart, signs with the same key the browsers subscribed to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PushSubscription:
    id: int
    tenant_id: int
    user_id: int
    endpoint: str
    p256dh: str  # the browser's P-256 public key, base64url
    auth: str  # the browser's 16-byte auth secret, base64url
    created_at: float


class PushStore(Protocol):
    async def add_push_subscription(
        self, *, tenant_id: int, user_id: int, endpoint: str, p256dh: str, auth: str
    ) -> PushSubscription:
        """Keep a subscription; an endpoint already kept is replaced (a browser re-subscribing, or a
        profile now signed in as someone else), keeping its id."""

    async def push_subscriptions(self, tenant_id: int) -> list[PushSubscription]:
        """The tenant's subscriptions, oldest first."""

    async def delete_push_subscription(
        self, tenant_id: int, subscription_id: int, *, user_id: int | None = None
    ) -> bool:
        """Remove one subscription (only the user's own when `user_id` is given); False when there was none."""

    async def keep_vapid_private_key(self, candidate: str) -> str:
        """The VAPID private key kept in the store; `candidate` becomes it when none is kept yet.
        Of processes racing at first start, all get the one that was kept."""

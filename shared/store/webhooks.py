"""Partner webhooks (CONTRACT §7): the endpoints a tenant registered and the deliveries owed to them.

An endpoint keeps its signing secret as given (deliveries must sign with it, so
unlike a password it cannot be hashed). A delivery is one event owed to one
endpoint: its body is fixed when it is queued, so every attempt, after any
restart, sends the same bytes under the same `evt_...` id. Queuing is idempotent
on (endpoint, event id): a bus message heard twice queues nothing new.

Senders take deliveries with a lease (`claim_webhook_deliveries`): a claimed
delivery is not handed to anyone else until its lease runs out, so one process
sends a given delivery at a time, and a process that dies mid-send only delays it
by a lease.

An endpoint remembers since when it has been failing (`failing_since`): the
first attempt sent to it that failed after one that was delivered (or since it
was registered or enabled again). Whoever finds it failing for too long disables
it with a conditional update (`disable_failing_webhook_endpoint`), so among
several senders exactly one flips it, and only that one tells the admins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from shared.store.audit import AuditEntry

DeliveryStatus = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: int
    tenant_id: int
    url: str
    events: tuple[str, ...]
    description: str | None
    enabled: bool
    secret: str
    created_at: float
    # When the attempts sent to it started failing without a success since; None while they succeed.
    failing_since: float | None = None


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """An event to owe to endpoints (made by shared/webhook_events.py)."""

    tenant_id: int
    type: str
    id: str  # "evt_" and 24 hex digits
    body: bytes  # the JSON every attempt posts
    imei: str | None = None  # the device it is about: erasing that device deletes its deliveries


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: int
    tenant_id: int
    endpoint_id: int
    event_id: str  # "evt_...": the same on every attempt
    type: str
    payload: bytes  # the exact JSON body sent
    status: DeliveryStatus
    attempts: int
    last_status: int | None  # the HTTP status of the last attempt, None when no answer came
    last_error: str | None
    next_attempt_at: float | None  # None once delivered or failed
    delivered_at: float | None
    first_attempt_at: float  # when the current retry window opened (queued, or retried by hand)
    created_at: float
    # Attempts since the current retry window opened: the backoff schedule's step. `attempts` counts
    # them all; a manual retry sets this one back to 0, so its schedule starts again from the first wait.
    window_attempts: int = 0


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one attempt ended in, for `finish_webhook_attempt`."""

    status: DeliveryStatus
    last_status: int | None
    last_error: str | None
    next_attempt_at: float | None
    delivered_at: float | None
    # When the request went out; None when none did (the endpoint was disabled or deleted), which says
    # nothing of the endpoint's health. Otherwise a delivery clears the endpoint's `failing_since` and
    # anything else sets it if it was unset.
    sent_at: float | None = None


class WebhookStore(Protocol):
    async def add_webhook_endpoint(
        self,
        *,
        tenant_id: int,
        url: str,
        events: Sequence[str],
        description: str | None,
        secret: str,
        audit: AuditEntry | None = None,
    ) -> WebhookEndpoint:
        """Register an endpoint, enabled."""

    async def webhook_endpoints(
        self, tenant_id: int, *, after_id: int | None = None, limit: int = 100
    ) -> list[WebhookEndpoint]:
        """The tenant's endpoints oldest first, from the first id above `after_id`."""

    async def webhook_endpoint(self, tenant_id: int, endpoint_id: int) -> WebhookEndpoint | None: ...

    async def update_webhook_endpoint(
        self,
        tenant_id: int,
        endpoint_id: int,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        enabled: bool | None = None,
        description: str | None = None,
        audit: AuditEntry | None = None,
    ) -> WebhookEndpoint | None:
        """Change what is given (None: unchanged); None when there is no such endpoint. Enabling a
        disabled endpoint gives it a fresh start: its `failing_since` is cleared, and its pending
        deliveries are due now with their backoff schedule from the first step (`window_attempts` 0)."""

    async def delete_webhook_endpoint(
        self, tenant_id: int, endpoint_id: int, *, audit: AuditEntry | None = None
    ) -> bool:
        """Remove an endpoint and the deliveries owed to it; False when there was none."""

    async def subscribed_webhook_endpoints(self, tenant_id: int, event_type: str) -> list[WebhookEndpoint]:
        """The tenant's enabled endpoints that asked for this type of event."""

    async def queue_webhook_event(
        self,
        *,
        tenant_id: int,
        endpoint_ids: Sequence[int],
        event_id: str,
        type: str,
        payload: bytes,
        at: float,
        imei: str | None = None,
    ) -> int:
        """Owe the event to each endpoint, due now (`imei`: the device it is about, if one); an
        (endpoint, event id) already owed is left as it is. Returns how many deliveries were new."""

    async def owe_webhook_event(self, event: WebhookEvent, *, at: float) -> int:
        """Owe the event to each enabled endpoint of its tenant subscribed to its type, due at `at`;
        idempotent like `queue_webhook_event`. Returns how many deliveries were new."""

    async def webhook_deliveries(
        self, tenant_id: int, endpoint_id: int, *, before_id: int | None = None, limit: int = 100
    ) -> list[WebhookDelivery]:
        """An endpoint's deliveries newest first, from the first id below `before_id`."""

    async def claim_webhook_deliveries(
        self,
        *,
        owner: str,
        now: float,
        lease_s: float,
        limit: int,
        per_endpoint: int | None = None,
        in_flight: Mapping[int, int] | None = None,
    ) -> list[WebhookDelivery]:
        """Take up to `limit` pending deliveries due by `now` that nobody holds, oldest due first,
        holding each for `lease_s` seconds under `owner` (unique per claimer). With `per_endpoint`,
        no endpoint gets more than that many minus what the claimer has `in_flight` to it already,
        so a slow endpoint's backlog is left for later instead of taking every slot."""

    async def finish_webhook_attempt(self, delivery_id: int, *, owner: str, outcome: AttemptOutcome) -> bool:
        """Record an attempt (with the endpoint's `failing_since`, for one that was sent) and release the
        lease; False (nothing changed) when `owner` no longer holds it."""

    async def finish_webhook_attempts(
        self, attempts: Sequence[tuple[int, AttemptOutcome]], *, owner: str
    ) -> list[bool]:
        """`finish_webhook_attempt` for each (delivery id, outcome), in one write where the adapter can:
        a sender records what ended meanwhile together, instead of one commit per attempt."""

    async def retry_webhook_delivery(self, tenant_id: int, endpoint_id: int, event_id: str, *, now: float) -> bool:
        """Make a delivery pending and due now, whatever its status, with a fresh retry window (and its
        backoff schedule from the first step: `window_attempts` 0); False when there is none."""

    async def disable_failing_webhook_endpoint(
        self, tenant_id: int, endpoint_id: int, *, failing_since_by: float, audit: AuditEntry | None = None
    ) -> WebhookEndpoint | None:
        """Disable the endpoint if it is enabled and has been failing since `failing_since_by` or
        earlier, writing `audit` with the change; the endpoint as disabled when this call disabled it,
        None otherwise (already disabled, recovered, deleted): one caller among many gets it."""

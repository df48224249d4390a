"""Partner webhooks in the notifications service (CONTRACT §7): events become deliveries, deliveries
are sent, retried and given up on.

Two halves, neither on alerting's path:

- Events are owed where they happen: alert changes and command answers by the
  store, in the change's own write (shared/webhook_events.py); escalation steps
  by the escalator as it takes them; devices coming online or going offline by
  `WebhookEvents`, a bus consumer of the listeners' `device_status` messages,
  under an id derived from the message's, so a redelivered message queues
  nothing twice.
- `WebhookSender`, a loop that claims due deliveries with a lease (one process
  sends a given delivery at a time), sends each in a task of its own, at most
  `webhook_concurrency_per_endpoint` per endpoint, and records the outcome:
  delivered, retried later with backoff, or failed once the retry window is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import orjson

from services.notifications.webhooks_disable import DisablingStore, disable_if_failing_too_long
from services.notifications.webhooks_outbound import attempt, new_client, retry_delay
from services.notifications.webhooks_recorder import AttemptRecorder, EndpointCache
from shared.bus import Message
from shared.config import Settings
from shared.logging import get_logger
from shared.store.webhooks import AttemptOutcome, WebhookDelivery, WebhookEndpoint, WebhookStore
from shared.waiting import wait_event
from shared.webhook_events import device_status_event

log = get_logger("solewatch.webhooks")

CLAIM_BATCH = 100
ALERTING_FIRST_S = 0.25  # how long an alert's webhooks wait for its own notifications to be under way
ALERTING_FIRST_MAX_S = 1.0  # the longest new webhook requests wait for alerting's sends to end
NOBODY_TTL_S = 1.5  # an endpoint newly subscribed to device events hears them this much later at most


class WebhookEvents:
    """Bus consumer: devices coming online or going offline become webhook deliveries. (Alert changes
    and command answers are owed by the store in the change's own write.)"""

    def __init__(self, store: WebhookStore, on_queued: asyncio.Event | None = None):
        self._store = store
        self._on_queued = on_queued
        self._listening: dict[tuple[int, str], float] = {}  # (tenant, event type) -> until when "nobody"

    async def on_device_status(self, message: Message) -> None:
        status = orjson.loads(message.payload)
        event = device_status_event(status, key=message.message_id, at=time.time())
        if await self._nobody_listens(event.tenant_id, event.type):
            return
        if await self._store.owe_webhook_event(event, at=time.time()):
            self.wake()

    async def _nobody_listens(self, tenant_id: int, event_type: str) -> bool:
        """True when no endpoint of the tenant asked for this type, as of at most `NOBODY_TTL_S` ago:
        a fleet logging in after a restart (thousands of devices at once) costs one read per tenant,
        not one per device, while nobody subscribes."""
        key = (tenant_id, event_type)
        if self._listening.get(key, 0.0) > time.monotonic():
            return True
        if await self._store.subscribed_webhook_endpoints(tenant_id, event_type):
            return False
        self._listening[key] = time.monotonic() + NOBODY_TTL_S
        return True

    async def on_alert(self, _message: Message) -> None:
        """An alert changed, and the store owed its events with the change: look soon, not at the poll.
        Not at once: the alert's SMS, emails and calls are being sent from this same process right
        now, and partners' requests must not compete with them for it (`solewatch bench webhooks`)."""
        asyncio.get_running_loop().call_later(ALERTING_FIRST_S, self.wake)

    def wake(self) -> None:
        if self._on_queued is not None:
            self._on_queued.set()


class WebhookSender:
    """Runtime part of the notifications service: sends what is due, as long as it runs."""

    def __init__(
        self, store: DisablingStore, settings: Settings, *, alerting_idle: Callable[[], Awaitable[None]] | None = None
    ):
        self._store = store
        self.settings = settings
        # Alerting first: while this process sends an alert's SMS, emails or calls, new webhook
        # requests wait (at most ALERTING_FIRST_MAX_S), so they never compete with them for it.
        self._alerting_idle = alerting_idle
        self.wake = asyncio.Event()  # set when something was queued in this process: look now
        self._owner = f"webhooks-{uuid.uuid4().hex[:12]}"
        self._recorder = AttemptRecorder(store, self._owner)
        self._endpoints = EndpointCache(store)
        self._in_flight: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._client = new_client()
        self._loop = asyncio.create_task(self._run(), name="webhook-sender")

    async def drain(self, timeout: float) -> None:
        """Stop claiming; give sends under way until `timeout` to finish (the rest keep their lease
        and are sent again by whoever claims them next)."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self) -> None:
        await self.drain(0)
        for task in set(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._recorder.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            if self._alerting_idle is not None:
                with contextlib.suppress(TimeoutError):  # asyncio.timeout, not wait_for: shared/waiting.py
                    async with asyncio.timeout(ALERTING_FIRST_MAX_S):
                        await self._alerting_idle()
            try:
                await self.send_due()
            except Exception:  # a store outage: try again at the next poll
                log.exception("webhook_claim_failed")
            await wait_event(self.wake, self.settings.webhook_poll_interval)
            self.wake.clear()

    async def send_due(self) -> int:
        """Claim what is due now and start sending it; how many were started."""
        claimed = await self._store.claim_webhook_deliveries(
            owner=self._owner,
            now=time.time(),
            lease_s=self.settings.webhook_lease,
            limit=CLAIM_BATCH,
            per_endpoint=self.settings.webhook_concurrency_per_endpoint,
            in_flight=self._in_flight,
        )
        for delivery in claimed:
            self._in_flight[delivery.endpoint_id] = self._in_flight.get(delivery.endpoint_id, 0) + 1
            task = asyncio.create_task(self._send(delivery), name=f"webhook-{delivery.event_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed)

    async def _send(self, delivery: WebhookDelivery) -> None:
        try:
            try:
                endpoint = await self._endpoints.get(delivery.tenant_id, delivery.endpoint_id)
                outcome = await self._attempt(delivery, endpoint)
            finally:
                # The request is over: the endpoint's slot is free while the outcome waits to be written
                # (the lease keeps this delivery from being claimed again meanwhile).
                self._release(delivery.endpoint_id)
            if not await self._recorder.record(delivery.id, outcome):
                log.info("webhook_outcome_superseded", event_id=delivery.event_id)  # retried by hand meanwhile
            elif endpoint is not None and outcome.sent_at is not None and outcome.status != "delivered":
                await self._after_failure(endpoint, outcome)
        except Exception:  # the store failed to record it: the lease runs out and it is sent again
            log.exception("webhook_record_failed", event_id=delivery.event_id)

    def _release(self, endpoint_id: int) -> None:
        left = self._in_flight[endpoint_id] - 1
        if left:
            self._in_flight[endpoint_id] = left
        else:
            del self._in_flight[endpoint_id]
        self.wake.set()  # a slot is free: that endpoint's backlog may go on

    async def _after_failure(self, endpoint: WebhookEndpoint, outcome: AttemptOutcome) -> None:
        """An endpoint failing for too long is disabled and its admins emailed (webhooks_disable.py)."""
        try:
            if await disable_if_failing_too_long(
                self._store, self.settings, endpoint, last_error=outcome.last_error or "", now=time.time()
            ):
                self._endpoints.forget(endpoint.id)  # this process stops sending to it at once
        except Exception:  # the store or the mailer failed: the next failed attempt asks again
            log.exception("webhook_disable_failed", endpoint_id=endpoint.id)

    async def _attempt(self, delivery: WebhookDelivery, endpoint: WebhookEndpoint | None) -> AttemptOutcome:
        now = time.time()
        error: str | None
        status: int | None
        if endpoint is None:  # deleted: nobody is owed it any more
            return AttemptOutcome("failed", None, "the endpoint was deleted", None, None)
        sent_at: float | None = None  # none sent to a disabled endpoint: says nothing of its health
        if not endpoint.enabled:  # owed again once enabled, within the retry window
            error, status = "the endpoint is disabled", None
        else:
            sent_at = now
            assert self._client is not None, "the sender is not started"
            result = await attempt(
                self._client,
                url=endpoint.url,
                secret=endpoint.secret,
                event_id=delivery.event_id,
                body=delivery.payload,
                now=int(now),
                production=self.settings.environment == "production",
            )
            if result.delivered:
                log.info("webhook_delivered", event_id=delivery.event_id, endpoint_id=endpoint.id)
                return AttemptOutcome("delivered", result.status, None, None, time.time(), sent_at)
            error, status = result.error, result.status
        # Retried until the window is over (at least that long), then given up on.
        if time.time() - delivery.first_attempt_at >= self.settings.webhook_retry_window:
            log.warning("webhook_failed", event_id=delivery.event_id, endpoint_id=delivery.endpoint_id, error=error)
            return AttemptOutcome("failed", status, error, None, None, sent_at)
        # The schedule's step counts from the retry window's opening: a manual retry starts it again.
        delay = retry_delay(
            delivery.event_id, delivery.window_attempts + 1, first_max=self.settings.webhook_first_retry_max
        )
        retry_at = now + delay  # from this attempt's start: its own 10 s never widen the gap
        log.info("webhook_retry", event_id=delivery.event_id, endpoint_id=delivery.endpoint_id, error=error)
        return AttemptOutcome("pending", status, error, retry_at, None, sent_at)

"""What the webhook sender asks of the store, gathered so partners never cost alerting its writer.

In the all-in-one mode the store has one writer, which ingestion and alerting
commit through; each commit waits for the disk. Recording every attempt in a
commit of its own put hundreds of commits a second in front of an SOS's own
when many deliveries ended together (`solewatch bench webhooks`). So attempts
that end within `RECORD_WINDOW_S` of each other are recorded in one write
(group commit), and endpoints are read at most once per `ENDPOINT_TTL_S`.
"""

from __future__ import annotations

import asyncio
import time

from shared.store.webhooks import AttemptOutcome, WebhookEndpoint, WebhookStore

RECORD_WINDOW_S = 0.05  # what an outcome may wait for company before it is written
ENDPOINT_TTL_S = 1.0  # a changed URL, secret or switch is used this much later at most


class AttemptRecorder:
    """`record` returns once the attempt is stored, written together with those ending meanwhile."""

    def __init__(self, store: WebhookStore, owner: str, *, window: float = RECORD_WINDOW_S):
        self._store = store
        self._owner = owner
        self._window = window
        self._waiting: list[tuple[int, AttemptOutcome, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, delivery_id: int, outcome: AttemptOutcome) -> bool:
        """As the store's `finish_webhook_attempt`: False when the lease was lost meanwhile."""
        stored: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((delivery_id, outcome, stored))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="webhook-attempts")
        return await stored

    async def _write_all(self) -> None:
        while self._waiting:
            await asyncio.sleep(self._window)
            batch, self._waiting = self._waiting, []
            try:
                results = await self._store.finish_webhook_attempts(
                    [(delivery_id, outcome) for delivery_id, outcome, _ in batch], owner=self._owner
                )
            except Exception as exc:  # each sender logs it; the leases run out and they are sent again
                for _, _, stored in batch:
                    if not stored.done():
                        stored.set_exception(exc)
                continue
            for (_, _, stored), result in zip(batch, results, strict=True):
                if not stored.done():  # a sender cancelled at close no longer waits
                    stored.set_result(result)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)


class EndpointCache:
    """The endpoints deliveries go to, read again after `ttl` seconds (None: deleted)."""

    def __init__(self, store: WebhookStore, *, ttl: float = ENDPOINT_TTL_S):
        self._store = store
        self._ttl = ttl
        self._read: dict[int, tuple[float, WebhookEndpoint | None]] = {}

    async def get(self, tenant_id: int, endpoint_id: int) -> WebhookEndpoint | None:
        now = time.monotonic()
        cached = self._read.get(endpoint_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        endpoint = await self._store.webhook_endpoint(tenant_id, endpoint_id)
        self._read[endpoint_id] = (now + self._ttl, endpoint)
        return endpoint

    def forget(self, endpoint_id: int) -> None:
        self._read.pop(endpoint_id, None)

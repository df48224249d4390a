"""The `positions` webhook event (CONTRACT §7): positions reach the endpoints that asked for them,
in batches, at most one delivery per endpoint per second, without touching ingestion.

Positions the tenant's location visibility hides (services/visibility, CONTRACT §8) are dropped
before they are owed to anyone.

Two halves, beside the other webhook events:

- `WebhookPositions`, a bus consumer of its own (`webhook-positions`) on the `telemetry` messages
  that the outbox makes durable with each ingest commit. The device's ACK never waits for it: the
  listener ACKs once the commit is durable, and the relay hands the message on afterwards. It
  looks the subscribers up in a short-lived cache (`SUBSCRIBERS_TTL_S`: one store read for every
  tenant at once), so while no endpoint asks for positions a message costs a dict lookup and is
  not even parsed. Otherwise each subscribed tenant's positions are stored as a pending row per
  endpoint, keyed by the bus message's id: a redelivered message adds nothing, and a crash after
  the row is written loses nothing (before it, the outbox or the broker delivers the message again).
- `PositionBatcher`, a loop that turns each endpoint's pending rows into one ordinary delivery of
  type `positions` (shared/store/webhook_positions.py: one store operation, at most
  `MAX_BATCH_ITEMS` items, only when the endpoint's previous positions delivery was delivered a
  second ago or more), then wakes the sender, which signs, sends and retries it like any event.

Why not the design that would send every position: a telemetry message carries each device's
newest position of a commit, not all of them (shared/store/messages.py: publishing every frame
cost as much as storing it). A device sending one position at a time (the usual case, one frame
in flight) has each in its own commit; a backlog uploaded at once, or several frames of a device
in one commit, reach webhooks as their newest position only, as on the live map. Sending every
position would mean reading them back from the store's history with a cursor per endpoint, in
ingestion order, which neither adapter keeps today (docs/partners.md says so, and how to read
the full history with the REST API).

The price, in the all-in-one mode only: the in-process bus hands each outbox message on once every
consumer has handled it, so while some endpoint subscribes to positions, the relay waits for one
small store write per telemetry message (about 0.6 ms median on SQLite with FULL sync, measured
alone) before its next message, alarms included. In the distributed mode this consumer has a queue
of its own and nothing waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson

from services.visibility.gate import VisiblePositions
from shared.bus import Message
from shared.logging import get_logger
from shared.position_view import position_view
from shared.protocols.xsole import Position
from shared.store.webhook_positions import MAX_BATCH_ITEMS, PositionItem, WebhookPositionsStore

log = get_logger("solewatch.webhooks")

SUBSCRIBERS_TTL_S = 1.5  # an endpoint newly subscribed to positions gets them this much later at most
BATCH_POLL_S = 0.25  # how often the batcher looks; the store keeps the one-second gap per endpoint
MIN_GAP_S = 1.0  # CONTRACT §7: at most one positions delivery per endpoint per second


def position_item(imei: str, row: list[Any]) -> PositionItem:
    """A telemetry message's position row as the event's item: the REST API's position, with its IMEI."""
    device_id, *fields, _received_at = row  # the row layout is shared/store/messages.py COLUMNS
    return device_id, {"imei": imei, **position_view(Position(*fields))}


class PositionsSubscribers:
    """Tenant id -> its endpoints subscribed to positions, read at most every `ttl` seconds."""

    def __init__(self, store: WebhookPositionsStore, ttl: float = SUBSCRIBERS_TTL_S):
        self._store = store
        self._ttl = ttl
        self._value: dict[int, list[int]] = {}
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def get(self) -> dict[int, list[int]]:
        if time.monotonic() - self._read_at < self._ttl:
            return self._value
        async with self._lock:  # one read for the messages arriving meanwhile
            if time.monotonic() - self._read_at >= self._ttl:
                self._value = await self._store.positions_subscribers()
                self._read_at = time.monotonic()
        return self._value


class WebhookPositions:
    """Bus consumer: the positions of subscribed tenants become pending rows per endpoint."""

    def __init__(self, store: WebhookPositionsStore, positions: VisiblePositions):
        self._store = store
        self._positions = positions  # the location visibility (CONTRACT §8): hidden positions are dropped
        self.subscribers = PositionsSubscribers(store)

    async def handle(self, message: Message) -> None:
        subscribers = await self.subscribers.get()
        if not subscribers:
            return  # nobody asked for positions: not even parsed
        telemetry = orjson.loads(message.payload)
        table = telemetry.get("positions")
        if table is None:
            return
        devices = telemetry["devices"]
        ts_at = table["columns"].index("ts")
        rows = [row for row in table["rows"] if devices[str(row[0])][0] in subscribers]
        owed: dict[int, list[PositionItem]] = {}
        for row in await self._positions.live(rows, lambda row: (devices[str(row[0])][0], row[0], row[ts_at])):
            tenant_id, imei = devices[str(row[0])]
            owed.setdefault(tenant_id, []).append(position_item(imei, row))
        for tenant_id, items in owed.items():
            await self._store.add_pending_positions(
                tenant_id=tenant_id,
                endpoint_ids=subscribers[tenant_id],
                message_id=message.message_id,
                items=items,
                at=time.time(),
            )


class PositionBatcher:
    """Runtime part: makes each endpoint's positions batch when it is due, as long as it runs."""

    def __init__(self, store: WebhookPositionsStore, sender_wake: asyncio.Event, *, poll: float = BATCH_POLL_S):
        self._store = store
        self._sender_wake = sender_wake
        self._poll = poll
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="webhook-positions-batcher")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None

    async def batch_due(self) -> int:
        """Make the batches due now; how many."""
        now = time.time()
        made = await self._store.batch_pending_positions(now=now, max_items=MAX_BATCH_ITEMS, min_gap_s=MIN_GAP_S)
        if made:
            self._sender_wake.set()
        return made

    async def _run(self) -> None:
        while True:
            try:
                await self.batch_due()
            except Exception:  # a store outage: the rows wait for the next pass
                log.exception("webhook_positions_batch_failed")
            # A plain poll: a batch waits for it a fraction of the second it waits anyway.
            await asyncio.sleep(self._poll)

"""Moves committed outbox entries onto the bus, then removes them.

At-least-once: an entry is removed only after the bus has taken it safely, so
a crash between the two publishes it again after restart (consumers dedupe by
message id).

Where several processes share one store (the distributed mode), a lease in
the shared cache lets one relay at a time move entries; the others stand by
and take over within the lease's lifetime when it stops.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from prometheus_client import Counter, Gauge

from shared.bus.port import Bus
from shared.cache import Cache
from shared.config import Settings
from shared.logging import get_logger
from shared.store.outbox import OutboxStore
from shared.waiting import wait_event

log = get_logger("solewatch.outbox")

relayed = Counter("outbox_relayed_total", "Outbox messages handed to the bus", ["topic"])
backlog = Gauge("outbox_backlog", "Outbox messages read but not yet relayed")


RESCAN_EVERY_S = 10.0
MAX_FAILURE_BACKOFF_S = 5.0


class CacheLease:
    """One holder at a time among processes sharing `cache`, renewed while in use."""

    def __init__(self, cache: Cache, key: str = "outbox-relay:leader", *, ttl: float = 10.0):
        self._cache = cache
        self._key = key
        self._ttl = ttl
        self._me = uuid.uuid4().hex.encode()
        self._renewed_at: float | None = None

    async def held(self) -> bool:
        now = time.monotonic()
        if self._renewed_at is not None and now - self._renewed_at < self._ttl / 3:
            return True
        holder = await self._cache.get(self._key)
        if holder == self._me:
            await self._cache.set(self._key, self._me, ttl=self._ttl)
        elif holder is not None or not await self._cache.set_if_absent(self._key, self._me, ttl=self._ttl):
            self._renewed_at = None
            return False
        self._renewed_at = now
        return True

    async def release(self) -> None:
        if self._renewed_at is not None and await self._cache.get(self._key) == self._me:
            await self._cache.delete(self._key)
        self._renewed_at = None


class OutboxRelay:
    name = "outbox"

    def __init__(
        self,
        store: OutboxStore,
        bus: Bus,
        *,
        batch: int = 200,
        poll_interval: float = 1.0,
        lease: CacheLease | None = None,
    ):
        self._store = store
        self._lease = lease
        self._bus = bus
        self._batch = batch
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_relayed = 0  # entries up to this id are on the bus (this run)
        self._rescanned_at = time.monotonic()
        self._relayed_ids: list[int] = []
        self._remover: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    def notify(self) -> None:
        """Something was committed: relay without waiting for the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def drain(self) -> None:
        # One last pass so what was acknowledged reaches its consumers before exit;
        # anything left stays in the outbox for the next start.
        self._stopping = True
        self._wake.set()
        if self._task:
            await self._task
        if self._remover is not None:
            await self._remover
        if self._lease is not None:
            try:
                await self._lease.release()
            except Exception as exc:  # the cache is down: the lease expires by itself
                log.warning("outbox_lease_release_failed", error=str(exc))

    async def close(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()

    async def reload(self, settings: Settings) -> None:
        self._wake.set()

    async def check_ready(self) -> str | None:
        return self.last_error

    async def relay_once(self) -> int:
        if self._lease is not None and not await self._lease.held():
            return 0
        if time.monotonic() - self._rescanned_at > RESCAN_EVERY_S:
            # Where several processes write one outbox, an entry can become visible
            # after a higher id was relayed: read from the start now and then.
            self._last_relayed, self._rescanned_at = 0, time.monotonic()
        entries = await self._store.outbox_pending(self._batch, after_id=self._last_relayed)
        backlog.set(len(entries))
        for entry in entries:
            await self._bus.publish(entry.topic, entry.payload, message_id=f"outbox-{entry.id}")
            relayed.labels(entry.topic).inc()
            self._last_relayed = entry.id
            self._relayed_ids.append(entry.id)
        backlog.set(0)
        if self._relayed_ids and (self._remover is None or self._remover.done()):
            self._remover = asyncio.create_task(self._remove_relayed(), name="outbox-remove")
        return len(entries)

    async def _remove_relayed(self) -> None:
        # Removal runs beside the relay, not before its next read: it is a write and
        # would queue behind ingest commits. If we crash first, the entries are
        # relayed again after restart (consumers dedupe by message id).
        while self._relayed_ids:
            ids, self._relayed_ids = self._relayed_ids, []
            try:
                await self._store.outbox_remove(ids)
            except Exception as exc:
                self._relayed_ids.extend(ids)
                log.warning("outbox_remove_failed", entries=len(ids), error=str(exc))
                await asyncio.sleep(self._poll_interval)

    async def _run(self) -> None:
        failures = 0
        while True:
            # Cleared before the pass, not after: a commit notified during the pass
            # must wake the next one at once, not wait for the poll interval.
            self._wake.clear()
            try:
                moved = await self.relay_once()
                if failures:
                    log.info("outbox_relay_resumed", after_failures=failures)
                failures, self.last_error = 0, None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep relaying after any failure, store or cache outage included
                self.last_error = f"relay failed: {exc}"
                if failures == 0:  # once per outage, not at every retry
                    log.exception("outbox_relay_failed")
                failures += 1
                # Back off while a backend is away (up to 5 s), rather than spin at the poll interval.
                await asyncio.sleep(min(self._poll_interval * 2 ** min(failures, 10), MAX_FAILURE_BACKOFF_S))
                moved = 0
            if self._stopping and moved == 0:
                return
            if moved == self._batch or (self._stopping and moved):
                continue
            await wait_event(self._wake, self._poll_interval)

"""Moves committed outbox entries onto the bus, then removes them.

At-least-once: an entry is removed only after the bus has taken it safely, so
a crash between the two publishes it again after restart (consumers dedupe by
message id).
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge

from shared.bus.port import Bus
from shared.config import Settings
from shared.logging import get_logger
from shared.store.port import Store

log = get_logger("solewatch.outbox")

relayed = Counter("outbox_relayed_total", "Outbox messages handed to the bus", ["topic"])
backlog = Gauge("outbox_backlog", "Outbox messages read but not yet relayed")


class OutboxRelay:
    name = "outbox"

    def __init__(self, store: Store, bus: Bus, *, batch: int = 200, poll_interval: float = 1.0):
        self._store = store
        self._bus = bus
        self._batch = batch
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_relayed = 0  # entries up to this id are on the bus (this run)
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

    async def close(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()

    async def reload(self, settings: Settings) -> None:
        self._wake.set()

    async def check_ready(self) -> str | None:
        return self.last_error

    async def relay_once(self) -> int:
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
        while True:
            try:
                moved = await self.relay_once()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep relaying after any failure, store outage included
                self.last_error = f"relay failed: {exc}"
                log.exception("outbox_relay_failed")
                moved = 0
            if self._stopping and moved == 0:
                return
            if moved == self._batch or (self._stopping and moved):
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            except TimeoutError:
                pass

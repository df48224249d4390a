"""Group commit: frames from every connection share one store transaction.

While one transaction is being written on the store's thread, the event loop
keeps reading and queues the next frames, so the batch size grows with the
load and durability costs one fsync per batch, not per frame. ACKs go out only
after the commit returns (contract rule 2).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from services.listener import metrics
from shared.logging import get_logger
from shared.protocols.xsole import AckStatus
from shared.store.port import FrameRecord, Store

log = get_logger("solewatch.listener.commit")


class AckSink(Protocol):
    def queue_ack(self, seq: int, status: AckStatus) -> None: ...
    def flush_acks(self) -> None: ...
    def resume_if_possible(self) -> None: ...


class GroupCommitter:
    name = "committer"

    def __init__(
        self, store: Store, *, max_batch: int, max_pending: int,
    ):
        self._store = store
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._pending: list[tuple[FrameRecord, AckSink]] = []
        self._stalled: set[AckSink] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @property
    def overloaded(self) -> bool:
        return len(self._pending) >= self.max_pending

    def submit(self, record: FrameRecord, sink: AckSink) -> None:
        self._pending.append((record, sink))
        self._idle.clear()
        self._wake.set()

    def stall(self, sink: AckSink) -> None:
        """`sink` stopped reading because the queue is full; resume it when it drains."""
        self._stalled.add(sink)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def flush(self) -> None:
        """Wait until every submitted frame is committed and acknowledged."""
        await self._idle.wait()

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                metrics.pending_frames.set(len(self._pending))
                await self._commit(batch)
                self._resume_stalled()
            self._idle.set()

    async def _commit(self, batch: list[tuple[FrameRecord, AckSink]]) -> None:
        started = time.perf_counter()
        try:
            await self._store.commit_frames([record for record, _ in batch])
        except Exception as exc:
            # Nothing was stored: tell the devices to retry rather than hold their frames.
            status = AckStatus.BUSY
            self.last_error = f"store commit failed: {exc}"
            log.error("commit_failed", frames=len(batch), error=str(exc))
        else:
            status = AckStatus.STORED
            self.last_error = None
            metrics.commit_seconds.observe(time.perf_counter() - started)
            metrics.commit_frames.observe(len(batch))
            metrics.frames_stored.inc(len(batch))
        touched: dict[AckSink, None] = {}
        for record, sink in batch:
            sink.queue_ack(record.event.seq, status)
            touched[sink] = None
        for sink in touched:
            sink.flush_acks()
        metrics.ACKS_BY_STATUS[status].inc(len(batch))

    def _resume_stalled(self) -> None:
        if self._stalled and len(self._pending) < self.max_pending // 2:
            stalled, self._stalled = self._stalled, set()
            for sink in stalled:
                sink.resume_if_possible()

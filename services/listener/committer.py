"""Group commit: frames from every connection share one durability step.

While one batch is being made durable, the event loop keeps reading and
queues the next frames, so the batch size grows with the load and durability
costs one fsync (or one confirmed publish) per batch, not per frame. ACKs go
out only after that step returns (contract rule 2).

The step is the store's transaction in the all-in-one mode, and in the
distributed mode a publish to the storage writer's durable quorum queue,
confirmed by the broker (see `publish_to_writer`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from services.listener import metrics
from shared.bus import Bus
from shared.bus.topics import TOPIC_INGEST
from shared.logging import get_logger
from shared.protocols.xsole import AckStatus
from shared.store.messages import ingest_message
from shared.store.port import FrameRecord

# A failed commit makes the listener not ready for this long (unless one succeeds
# meanwhile): long enough for a probe to see it, short enough that a listener
# whose backend is back does not wait for traffic that avoids it to turn ready.
FAILURE_REPORTED_FOR_S = 5.0

MakeDurable = Callable[[Sequence[FrameRecord]], Awaitable[None]]

log = get_logger("solewatch.listener.commit")


class AckSink(Protocol):
    def queue_ack(self, seq: int, status: AckStatus) -> None: ...
    def flush_acks(self) -> None: ...
    def resume_if_possible(self) -> None: ...


class GroupCommitter:
    name = "committer"

    def __init__(self, make_durable: MakeDurable, *, max_batch: int, max_pending: int):
        self._make_durable = make_durable
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._pending: list[tuple[FrameRecord, AckSink]] = []
        self._stalled: set[AckSink] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self._last_error_at = 0.0

    @property
    def recent_error(self) -> str | None:
        if self.last_error and time.monotonic() - self._last_error_at < FAILURE_REPORTED_FOR_S:
            return self.last_error
        return None

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
            await self._make_durable([record for record, _ in batch])
        except Exception as exc:
            # Not durable (maybe partly stored; a retry completes it): tell the devices to retry.
            status = AckStatus.BUSY
            self.last_error = f"frames not made durable: {exc}"
            self._last_error_at = time.monotonic()
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


def publish_to_writer(bus: Bus) -> MakeDurable:
    """The distributed durability step: one confirmed publish per batch.

    Once the broker confirms, the batch sits replicated in the storage
    writer's quorum queue and is stored from there idempotently (a redelivery
    inserts nothing twice), so the listener may ACK without waiting for MongoDB.
    """
    async def publish(records: Sequence[FrameRecord]) -> None:
        # One id per batch: the broker's redeliveries of it keep it; a retransmitted
        # frame comes in a new batch, and the store's keys dedupe it.
        await bus.publish(TOPIC_INGEST, ingest_message(records), message_id=f"ingest-{uuid.uuid4().hex}")
    return publish

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
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from services.listener import metrics
from shared.bus import Bus
from shared.bus.topics import TOPIC_INGEST
from shared.live_feed import LiveFeed
from shared.logging import get_logger
from shared.protocols.xsole import AckStatus, FrameType, Position
from shared.protocols.xsole.bulk import TelemetryRun
from shared.store.batch import BatchBuilder, DeviceRef, IngestBatch, TelemetryEvent
from shared.store.ingest_message import ingest_message

# A failed commit makes the listener not ready for this long (unless one succeeds
# meanwhile): long enough for a probe to see it, short enough that a listener
# whose backend is back does not wait for traffic that avoids it to turn ready.
FAILURE_REPORTED_FOR_S = 5.0
# While commits keep failing (a full disk, a store that is down), one summary
# line this often at most: every failed batch logging its own line filled the
# very volume that was full with hundreds of lines a second.
OUTAGE_SUMMARY_EVERY_S = 60.0

MakeDurable = Callable[[IngestBatch], Awaitable[None]]

log = get_logger("solewatch.listener.commit")


class AckSink(Protocol):
    def queue_acks(self, seqs: list[int], status: AckStatus) -> None: ...
    def flush_acks(self) -> None: ...
    def resume_if_possible(self) -> None: ...


class Batch:
    """Frames for one durability step, and whom to ACK once it is done. Sealed
    into an immutable `IngestBatch` when its turn comes."""

    __slots__ = ("acks", "contents", "frames")

    def __init__(self) -> None:
        self.contents = BatchBuilder()
        self.acks: list[tuple[AckSink, list[int]]] = []  # in arrival order, so each device gets its ACKs in order
        self.frames = 0


class CommitOutage:
    """Logs a run of failed commits as a state change, not batch by batch.

    The first failure logs `commit_failing`; while failures go on,
    `commit_still_failing` sums them up at most every `summary_every`
    seconds; the first success after them logs `commit_recovered`. Devices
    get ACK 4 for every failed batch all the same (the committer's job).
    """

    def __init__(self, *, summary_every: float = OUTAGE_SUMMARY_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.summary_every = summary_every
        self._clock = clock
        self.failing_since: float | None = None
        self.failed_batches = 0  # since the outage began
        self.frames_refused = 0
        self._summarized_at = 0.0
        self._unsummarized = (0, 0)  # (batches, frames) failed since the last line

    def failed(self, frames: int, error: str) -> None:
        now = self._clock()
        self.failed_batches += 1
        self.frames_refused += frames
        if self.failing_since is None:
            self.failing_since = self._summarized_at = now
            self._unsummarized = (0, 0)
            log.error(
                "commit_failing",
                frames=frames,
                error=error,
                detail="frames get ACK 4 (retry later) until a commit succeeds",
            )
            return
        batches, refused = self._unsummarized
        self._unsummarized = (batches + 1, refused + frames)
        if now - self._summarized_at >= self.summary_every:
            log.error(
                "commit_still_failing",
                failed_batches=self._unsummarized[0],
                frames_refused=self._unsummarized[1],
                over_s=round(now - self._summarized_at, 1),
                failing_for_s=round(now - self.failing_since, 1),
                error=error,
            )
            self._summarized_at = now
            self._unsummarized = (0, 0)

    def succeeded(self) -> None:
        if self.failing_since is None:
            return
        log.warning(
            "commit_recovered",
            failed_batches=self.failed_batches,
            frames_refused=self.frames_refused,
            failed_for_s=round(self._clock() - self.failing_since, 1),
        )
        self.failing_since = None
        self.failed_batches = self.frames_refused = 0


class GroupCommitter:
    name = "committer"

    def __init__(self, make_durable: MakeDurable, *, max_batch: int, max_pending: int):
        self._make_durable = make_durable
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.batch = Batch()  # the one being filled
        self._full: deque[Batch] = deque()  # filled up to max_batch, waiting their turn
        self.pending = 0  # frames submitted and not yet answered
        self._stalled: set[AckSink] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self._last_error_at = 0.0
        self.outage = CommitOutage()
        # Where positions go the moment they arrive, for the live views of this process (the
        # all-in-one mode): they need not wait for the commit, which the ACK does.
        self.live: LiveFeed | None = None

    @property
    def recent_error(self) -> str | None:
        if self.last_error and time.monotonic() - self._last_error_at < FAILURE_REPORTED_FOR_S:
            return self.last_error
        return None

    @property
    def overloaded(self) -> bool:
        return self.pending >= self.max_pending

    def add_run(self, sink: AckSink, device: DeviceRef, run: TelemetryRun, received_at: float) -> None:
        """A run of frames from the hot path; `sink` gets their ACKs once durable."""
        batch = self.batch
        batch.acks.append((sink, run.seqs))
        batch.contents.add_run(device, run, received_at)
        self._added(batch, len(run.seqs))
        if self.live is not None and (positions := run.fields_by_type.get(FrameType.POSITION)):
            self.live.offer_newest(device, positions, received_at)

    def add_event(self, sink: AckSink, device: DeviceRef, event: TelemetryEvent, received_at: float) -> None:
        """One frame from the general path; `sink` gets its ACK once durable."""
        batch = self.batch
        batch.contents.add_event(device, event, received_at)
        batch.acks.append((sink, [event.seq]))
        self._added(batch, 1)
        if self.live is not None and type(event) is Position:
            self.live.offer(device, event, received_at)

    def _added(self, batch: Batch, frames: int) -> None:
        batch.frames += frames
        self.pending += frames
        if batch.frames >= self.max_batch:
            self._full.append(batch)
            self.batch = Batch()
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

    def _next_batch(self) -> Batch | None:
        if self._full:
            return self._full.popleft()
        if self.batch.frames:
            batch, self.batch = self.batch, Batch()
            return batch
        return None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (batch := self._next_batch()) is not None:
                metrics.pending_frames.set(self.pending)
                await self._commit(batch)
                self.pending -= batch.frames
                self._resume_stalled()
            self._idle.set()

    async def _commit(self, batch: Batch) -> None:
        started = time.perf_counter()
        sealed = batch.contents.build()
        _count_received(sealed)
        try:
            await self._make_durable(sealed)
        except Exception as exc:
            # Not durable (maybe partly stored; a retry completes it): tell the devices to retry.
            status = AckStatus.BUSY
            self.last_error = f"frames not made durable: {exc}"
            self._last_error_at = time.monotonic()
            self.outage.failed(batch.frames, str(exc))
            metrics.commits_failed.inc()
        else:
            status = AckStatus.STORED
            self.last_error = None
            self.outage.succeeded()
            metrics.commit_seconds.observe(time.perf_counter() - started)
            metrics.commit_frames.observe(batch.frames)
            metrics.frames_stored.inc(batch.frames)
        touched: dict[AckSink, None] = {}
        for sink, seqs in batch.acks:
            sink.queue_acks(seqs, status)
            touched[sink] = None
        for sink in touched:
            sink.flush_acks()
        metrics.ACKS_BY_STATUS[status].inc(batch.frames)

    def _resume_stalled(self) -> None:
        if self._stalled and self.pending < self.max_pending // 2:
            stalled, self._stalled = self._stalled, set()
            for sink in stalled:
                sink.resume_if_possible()


_RECEIVED_LABEL: dict[int, str] = {
    FrameType.POSITION: "position",
    FrameType.HEARTBEAT: "heartbeat",
    FrameType.ACTIVITY: "activity",
    FrameType.COMMAND_RESULT: "commandresult",
    FrameType.ALARM: "alarm",
}


def _count_received(batch: IngestBatch) -> None:
    # Once per batch: the hot path keeps no per-frame tally.
    received = metrics.FRAMES_RECEIVED
    for frame_type, count in batch.frames_by_type.items():
        label = _RECEIVED_LABEL[frame_type]
        received[label] = received.get(label, 0) + count


def publish_to_writer(bus: Bus) -> MakeDurable:
    """The distributed durability step: one confirmed publish per batch.

    Once the broker confirms, the batch sits replicated in the storage
    writer's quorum queue and is stored from there idempotently (a redelivery
    inserts nothing twice), so the listener may ACK without waiting for MongoDB.
    """

    async def publish(batch: IngestBatch) -> None:
        # One id per batch: the broker's redeliveries of it keep it; a retransmitted
        # frame comes in a new batch, and the store's keys dedupe it.
        await bus.publish(TOPIC_INGEST, ingest_message(batch), message_id=f"ingest-{uuid.uuid4().hex}")

    return publish

"""The storage writer of the distributed mode: ingest messages into the store.

Listeners ACK a batch once the broker has confirmed it into the writer's
quorum queue; this consumer then commits it to the store, and acks the
message only after the commit. Inserts are idempotent on (device, ts, seq),
so a message redelivered after a crash stores nothing twice. It runs in every
listener process: the queue's competing consumers share the work.
"""

from __future__ import annotations

from prometheus_client import Counter

from shared.bus import Bus, Message
from shared.bus.topics import TOPIC_INGEST
from shared.config import Settings
from shared.store import TelemetryStore
from shared.store.ingest_message import ingest_batch

WRITER_CONSUMER = "store-writer"

frames_written = Counter("writer_frames_total", "Frames the storage writer committed from the bus")


class StoreWriter:
    name = "store-writer"

    def __init__(self, store: TelemetryStore, bus: Bus):
        self._store = store
        bus.subscribe(WRITER_CONSUMER, [TOPIC_INGEST], self.handle)

    async def handle(self, message: Message) -> None:
        batch = ingest_batch(message.payload)  # ValueError: poison, dead-lettered after the retries
        if frames := batch.frames:
            await self._store.commit_telemetry(batch)
            frames_written.inc(frames)

    async def start(self) -> None:
        pass

    async def drain(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def reload(self, settings: Settings) -> None:
        pass

    async def check_ready(self) -> str | None:
        return None

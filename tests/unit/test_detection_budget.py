"""Detection keeps to its share of the process: a slow flush spaces the next, and nothing handled meanwhile is lost."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.context import ServiceContext
from services.notifications import detection
from services.notifications.detection import DetectionService
from shared.bus import Message
from shared.bus.memory import MemoryBus
from shared.cache.memory import MemoryCache
from shared.protocols.xsole import Position
from shared.store.batch import IngestBatch
from shared.store.messages import telemetry_message
from shared.store.sqlite import SqliteStore
from tests.conftest import embedded_settings


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[DetectionService]:
    store = SqliteStore(tmp_path / "solewatch.db", synchronous="NORMAL")
    await store.open()
    cache = MemoryCache()
    await cache.start()
    context = ServiceContext(
        settings=embedded_settings(tmp_path),
        store=store,
        cache=cache,
        bus=MemoryBus(),
        commands=None,  # type: ignore[arg-type]
    )
    judging = DetectionService(context)
    try:
        yield judging
    finally:
        await judging.close()
        await store.close()


def telemetry(device_id: int, seq: int) -> Message:
    now = int(time.time())
    position = Position(seq, now - 10 + seq, 436160000, 70550000, 12, 140, 2705, 9, 8, 87, 1)
    batch = IngestBatch.from_events([(device_id, 1, f"35{device_id:013d}", position, time.time())])
    payload = telemetry_message(batch)
    assert payload is not None
    return Message("telemetry", payload, f"m{device_id}-{seq}")


async def test_a_flush_that_took_long_spaces_the_next_one(service, monkeypatch) -> None:
    monkeypatch.setattr(detection, "COALESCE_S", 0.02)
    starts: list[float] = []

    async def slow_flush() -> None:  # judging a big fleet: 0.1 s
        starts.append(time.monotonic())
        service._pending = {}
        await asyncio.sleep(0.1)

    monkeypatch.setattr(service, "flush", slow_flush)
    deadline = time.monotonic() + 1.6
    seq = 0
    while time.monotonic() < deadline:  # frames keep coming
        seq += 1
        await service.handle(telemetry(1, seq))
        await asyncio.sleep(0.01)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps, starts
    # Each flush took 0.1 s: at a share of 0.2 the next waits 0.4 s more (0.12 s apart without the budget).
    assert min(gaps) >= 0.1 + 0.1 * (1 / detection.DETECTION_SHARE - 1) * 0.9, gaps


async def test_frames_handled_during_a_flush_are_judged_without_another_message(service, monkeypatch) -> None:
    monkeypatch.setattr(detection, "COALESCE_S", 0.02)
    judged: list[set[int]] = []

    async def flush() -> None:
        pending, service._pending = service._pending, {}
        judged.append({device_id for rows in pending.values() for device_id in rows})
        await asyncio.sleep(0.05)  # it yields to the loop: frames keep being handled meanwhile

    monkeypatch.setattr(service, "flush", flush)
    await service.handle(telemetry(1, 1))
    while not judged:
        await asyncio.sleep(0.01)
    await service.handle(telemetry(2, 1))  # during the first flush, and the last frame to come
    for _ in range(100):
        if len(judged) == 2:
            break
        await asyncio.sleep(0.02)
    assert judged == [{1}, {2}]

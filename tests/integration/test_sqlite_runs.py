"""The embedded store keeps telemetry in runs of frames: each frame once, read back in order.

The store contract suite covers what every adapter does; these cover what the
run layout adds: runs that overlap stored ones or each other (a device that
retransmits, a backlog uploaded after a coverage gap), runs spanning hours of
device time, and paging across all of that.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from shared.protocols.xsole import Heartbeat, Position, encode
from shared.protocols.xsole.bulk import read_run
from shared.store import Device, StoredPosition, hash_device_token
from shared.store.batch import DeviceRef, DeviceRun, IngestBatch
from shared.store.sqlite import SqliteStore
from shared.store.sqlite_runs import RUN_SPAN_S
from tests.helpers.stored import as_stored, count_stored, frames_on_disk

TS = 1_790_000_000


def fix(seq: int, ts: int) -> Position:
    return Position(seq, ts, 436160000 + seq, 70550000, 12, 140, 2705, 9, 8, 87, 1)


def run_of(device: Device, *events: Position | Heartbeat) -> DeviceRun:
    """The events as one run of the listener's hot path, received now."""
    return DeviceRun(
        DeviceRef(device.id, device.tenant_id, device.imei), read_run(b"".join(map(encode, events))), time.time()
    )


@pytest.fixture
async def store(tmp_path: Path):
    store = SqliteStore(tmp_path / "solewatch.db")
    await store.open()
    yield store
    await store.close()


async def device_in(store: SqliteStore, imei: str = "356307042441013") -> Device:
    tenant_id = await store.ensure_tenant("acme")
    return await store.add_device(tenant_id=tenant_id, imei=imei, name="Alice", token_hash=hash_device_token(b"t" * 16))


async def all_positions(store: SqliteStore, device: Device, page: int) -> list[StoredPosition]:
    found: list[StoredPosition] = []
    cursor = None
    while True:
        got = await store.positions(device.id, after=cursor, limit=page)
        found += got
        if len(got) < page:
            return found
        cursor = (got[-1].ts, got[-1].seq)


async def test_a_retransmitted_run_is_stored_once(store: SqliteStore) -> None:
    device = await device_in(store)
    first = [fix(seq, TS + seq) for seq in range(1, 9)]
    await store.commit_telemetry(IngestBatch(runs=(run_of(device, *first),)))
    # The ACKs were lost: the device sends the last four again with four new ones.
    again = first[4:] + [fix(seq, TS + seq) for seq in range(9, 13)]
    await store.commit_telemetry(IngestBatch(runs=(run_of(device, *again),)))

    assert await all_positions(store, device, page=5) == as_stored(*(fix(seq, TS + seq) for seq in range(1, 13)))
    assert set(frames_on_disk(store.path).values()) == {1}
    assert (await count_stored(store, device.id))["positions"] == 12


async def test_a_run_retransmitted_after_a_restart_is_stored_once(store: SqliteStore) -> None:
    # The store learns each device's newest stored frame when it opens: a device whose ACKs the
    # restart cut off sends its frames again to the new process.
    device, other = await device_in(store), await device_in(store, imei="356307042441021")
    first = [fix(seq, TS + seq) for seq in range(1, 9)]
    await store.commit_telemetry(IngestBatch(runs=(run_of(device, *first), run_of(other, fix(1, TS)))))
    await store.close()
    reopened = SqliteStore(store.path)
    await reopened.open()
    try:
        again = first[4:] + [fix(seq, TS + seq) for seq in range(9, 13)]
        await reopened.commit_telemetry(IngestBatch(runs=(run_of(device, *again),)))

        assert await all_positions(reopened, device, page=5) == as_stored(*(fix(s, TS + s) for s in range(1, 13)))
        assert set(frames_on_disk(reopened.path).values()) == {1}
    finally:
        await reopened.close()


async def test_copies_within_one_commit_are_stored_once(store: SqliteStore) -> None:
    device = await device_in(store)
    frames = [fix(seq, TS + seq) for seq in range(1, 5)]
    # A reconnect while the first copy's commit was still being gathered.
    await store.commit_telemetry(IngestBatch(runs=(run_of(device, *frames), run_of(device, *frames[2:]))))

    assert await store.positions(device.id) == as_stored(*frames)
    assert set(frames_on_disk(store.path).values()) == {1}


async def test_same_time_different_frames_are_all_kept(store: SqliteStore) -> None:
    device = await device_in(store)
    await store.commit_telemetry(IngestBatch(runs=(run_of(device, fix(1, TS), Heartbeat(2, TS, 80, -60)),)))
    await store.commit_telemetry(IngestBatch(runs=(run_of(device, fix(3, TS), Heartbeat(4, TS, 79, -60)),)))

    assert await store.positions(device.id) == as_stored(fix(1, TS), fix(3, TS))
    assert await count_stored(store, device.id) == {"positions": 2, "heartbeats": 2, "activities": 0, "alarms": 0}


async def test_a_backlog_spanning_hours_reads_back_in_order(store: SqliteStore) -> None:
    device = await device_in(store)
    live = [fix(seq, TS + 10 * RUN_SPAN_S + seq) for seq in range(100, 104)]
    await store.commit_telemetry(IngestBatch(runs=(run_of(device, *live),)))
    # Back in coverage: eight hours of buffered fixes in one read, one an hour.
    backlog = [fix(seq, TS + seq * RUN_SPAN_S) for seq in range(1, 9)]
    await store.commit_telemetry(IngestBatch(runs=(run_of(device, *backlog),)))

    assert await all_positions(store, device, page=3) == as_stored(*backlog, *live)
    since = TS + 3 * RUN_SPAN_S
    assert await store.positions(device.id, since=since, until=since + 2 * RUN_SPAN_S) == as_stored(*backlog[2:5])


@pytest.mark.parametrize("seed", range(6))
async def test_paging_returns_every_stored_position_once_in_order(store: SqliteStore, seed: int) -> None:
    rng = random.Random(seed)
    device, other = await device_in(store), await device_in(store, "356307042441021")
    sent: dict[tuple[int, int], Position] = {}
    for _ in range(rng.randint(1, 12)):  # commits
        runs = []
        for _ in range(rng.randint(1, 6)):  # device reads in the commit
            events = []
            for _ in range(rng.randint(1, 8)):
                # Mostly recent, sometimes hours back (buffered), sometimes a copy of a frame already sent.
                if sent and rng.random() < 0.2:
                    events.append(rng.choice(list(sent.values())))
                    continue
                ts = TS + rng.choice([rng.randint(0, 50), rng.randint(0, 5 * RUN_SPAN_S)])
                event = fix(rng.randint(0, 0xFFFF), ts)
                events.append(event)
            runs.append(run_of(device, *events))
            sent.update(((e.ts, e.seq), e) for e in events)
        runs.append(run_of(other, fix(1, TS + rng.randint(0, 100))))
        await store.commit_telemetry(IngestBatch(runs=tuple(runs)))

    expected = [sent[key] for key in sorted(sent)]
    assert await all_positions(store, device, page=rng.randint(1, 7)) == as_stored(*expected)
    assert (await count_stored(store, device.id))["positions"] == len(expected)
    low, high = sorted(rng.randint(TS, TS + 5 * RUN_SPAN_S) for _ in range(2))
    assert await store.positions(device.id, since=low, until=high, limit=10_000) == as_stored(
        *(p for p in expected if low <= p.ts <= high)
    )

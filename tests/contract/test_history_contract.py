"""The telemetry port's history of ACTIVITY and HEARTBEAT frames (`activities`, `heartbeats`) for every
adapter in STORE_FACTORIES: oldest first, ranges inclusive, a (ts, seq) cursor, each frame once, one
device's frames only, however they were mixed with positions in a commit.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.protocols.xsole import Activity, Heartbeat
from shared.protocols.xsole.constants import FLAG_BUFFERED
from shared.store import Store
from shared.store.telemetry import StoredActivity, StoredHeartbeat
from tests.contract.store_data import OTHER_IMEI, TS, add_device, frame, position
from tests.helpers.stored import commit_frames


def activity(seq: int, ts: int, *, state: int = 2, flags: int = 0) -> Activity:
    return Activity(seq, ts, 10 + seq, state, 90 + seq, 80 - seq, flags)


def heartbeat(seq: int, ts: int) -> Heartbeat:
    return Heartbeat(seq, ts, 90 - seq, -60 - seq)


def stored_activity(event: Activity) -> StoredActivity:
    return StoredActivity(
        event.ts, event.seq, event.steps, event.state, event.cadence, event.battery, bool(event.flags & FLAG_BUFFERED)
    )


def stored_heartbeat(event: Heartbeat) -> StoredHeartbeat:
    return StoredHeartbeat(event.ts, event.seq, event.battery, event.rssi)


KINDS = {
    "activities": (activity, stored_activity),
    "heartbeats": (heartbeat, stored_heartbeat),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_history_oldest_first_with_range_limit_and_cursor(store: Store, kind: str) -> None:
    make, as_stored = KINDS[kind]
    read = getattr(store, kind)
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI)
    # Two frames share a timestamp; the older half arrives last (buffered), mixed with positions.
    events: list[Any] = [make(n, TS + 10 * (n // 2)) for n in range(12)]
    await commit_frames(store, [frame(device, e) for e in events[6:]] + [frame(device, position(50, TS + 5))])
    again = [frame(other, make(9, TS + 30)), frame(device, make(3, TS + 10))]
    await commit_frames(store, [frame(device, e) for e in events[:6]] + again)
    rows = [as_stored(e) for e in events]

    assert await read(device.id) == rows  # each once, though seq 3 was committed twice
    assert await read(device.id, limit=4) == rows[:4]
    assert await read(device.id, since=TS + 10, until=TS + 30) == rows[2:8]  # both inclusive
    assert await read(device.id, since=TS + 11, until=TS + 29) == rows[4:6]
    assert await read(device.id, since=TS + 1000) == []
    assert await read(other.id) == [as_stored(make(9, TS + 30))]

    walked: list[Any] = []
    after: tuple[int, int] | None = None
    while page := await read(device.id, after=after, limit=5):
        assert len(page) <= 5
        walked += page
        after = (page[-1].ts, page[-1].seq)
    assert walked == rows
    # the cursor splits two frames of the same second, and combines with a range
    assert await read(device.id, after=(TS + 20, 4), until=TS + 30) == rows[5:8]
    assert await read(device.id, after=(TS + 20, 4), since=TS + 30) == rows[6:]


async def test_activity_keeps_state_and_buffered_flag(store: Store) -> None:
    device = await add_device(store)
    lying = activity(1, TS, state=4, flags=FLAG_BUFFERED)
    off_foot = activity(2, TS + 1, state=5)
    await commit_frames(store, [frame(device, lying), frame(device, off_foot), frame(device, heartbeat(3, TS + 2))])
    assert await store.activities(device.id) == [stored_activity(lying), stored_activity(off_foot)]
    assert (await store.activities(device.id))[0].buffered is True
    assert await store.heartbeats(device.id) == [stored_heartbeat(heartbeat(3, TS + 2))]
    assert await store.positions(device.id) == []

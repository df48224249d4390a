"""Committing an `IngestBatch` (shared/store/batch.py), for every adapter in STORE_FACTORIES.

The store contract suite commits frames one by one (`IngestBatch.from_events`);
the listener's hot path hands the store runs of frames as received. Whatever
the path, the frames are stored and the device's state follows them.
"""

from __future__ import annotations

import time

import orjson

from shared.bus.topics import TOPIC_TELEMETRY
from shared.protocols.xsole import Heartbeat, Position, encode
from shared.protocols.xsole.bulk import read_run
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.store import Device, Store, hash_device_token
from shared.store.batch import DeviceRef, DeviceRun, IngestBatch

TS = int(time.time()) // 86400 * 86400 - 86400
IMEI = "356307042441013"
LAT, LON = 436163000, 70553000


async def add_device(store: Store) -> Device:
    tenant_id = await store.ensure_tenant("acme")
    return await store.add_device(tenant_id=tenant_id, imei=IMEI, name="Alice", token_hash=hash_device_token(b"t"))


def position(seq: int, ts: int, *, lat: int, battery: int, flags: int = FLAG_FIX_VALID) -> Position:
    return Position(seq, ts, lat, LON, 12, 140, 900, 9, 11, battery, flags)


def hot_run(device: Device, *events: Position | Heartbeat, received_at: float) -> DeviceRun:
    """The events as the listener's hot path hands them over: one run of frames."""
    run = read_run(b"".join(map(encode, events)))
    return DeviceRun(DeviceRef(device.id, device.tenant_id, device.imei), run, received_at)


async def test_a_batch_of_runs_alone_updates_the_device_state(store: Store) -> None:
    device = await add_device(store)
    now = time.time()
    frames = (
        position(1, TS + 10, lat=LAT + 10, battery=70),
        position(2, TS + 30, lat=LAT + 30, battery=68),
        position(3, TS + 20, lat=LAT + 20, battery=69),  # buffered: older than the one before
        position(4, TS + 40, lat=LAT + 40, battery=67, flags=0),  # no fix
        Heartbeat(5, TS + 35, 66, -60),
    )

    await store.commit_telemetry(IngestBatch(runs=(hot_run(device, *frames, received_at=now),)))

    stored = await store.device(device.id)
    assert stored is not None
    assert stored.last_seen == now
    assert stored.battery == 67  # the newest reading by device time, a position without a fix too
    assert (stored.last_fix_ts, stored.last_lat_e7, stored.last_lon_e7) == (TS + 30, LAT + 30, LON)
    assert [p.seq for p in await store.positions(device.id)] == [1, 3, 2, 4]
    [message] = [orjson.loads(e.payload) for e in await store.outbox_pending(10) if e.topic == TOPIC_TELEMETRY]
    assert [row[1] for row in message["positions"]["rows"]] == [4]  # each device's newest position
    assert message["devices"] == {str(device.id): [device.tenant_id, IMEI]}


async def test_runs_and_single_frames_of_one_batch_update_the_device_state_alike(store: Store) -> None:
    device = await add_device(store)
    now = time.time()
    single = IngestBatch.from_events(
        [(device.id, device.tenant_id, IMEI, position(7, TS + 70, lat=LAT + 70, battery=40), now + 1)]
    )
    batch = IngestBatch(
        runs=(hot_run(device, position(6, TS + 60, lat=LAT + 60, battery=41), received_at=now), *single.runs)
    )

    await store.commit_telemetry(batch)

    stored = await store.device(device.id)
    assert stored is not None
    assert (stored.last_seen, stored.battery, stored.last_fix_ts) == (now + 1, 40, TS + 70)

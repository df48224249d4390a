"""The telemetry port (shared/store/telemetry.py) for every adapter in STORE_FACTORIES: frames
committed each once with their outbox messages, the device state they move, positions read back.

Only port methods are used (frames go in through tests/helpers/stored.py, as the listener
commits them), never an adapter's tables. Each test gets a fresh, empty store.
"""

from __future__ import annotations

import asyncio
import time

from shared.bus.topics import TOPIC_ALARM, TOPIC_TELEMETRY
from shared.protocols.xsole import Activity, AlarmKind, CommandResult, Heartbeat
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID
from shared.protocols.xsole.validation import MAX_FUTURE_SKEW_S
from shared.store import Store, StoredPosition
from shared.store.messages import telemetry_items
from tests.contract.store_data import IMEI, LAT, LON, OTHER_IMEI, TS, add_device, frame, outbox, position, sos
from tests.helpers.stored import as_stored, commit_frames, count_stored


async def test_committing_the_same_frames_twice_stores_each_once(store: Store) -> None:
    device = await add_device(store)
    fix = position(1, TS + 1)
    records = [
        frame(device, fix),
        frame(device, Heartbeat(2, TS + 2, 80, -70)),
        frame(device, Activity(3, TS + 3, 120, 2, 96, 80, 0)),
        frame(device, sos(4, TS + 4)),
    ]
    await commit_frames(store, records)
    await commit_frames(store, records)
    # A retransmission is received later, and may share a commit with its first copy.
    later = [record._replace(received_at=record.received_at + 5) for record in records]
    await commit_frames(store, later + later)

    assert await count_stored(store, device.id) == {"positions": 1, "heartbeats": 1, "activities": 1, "alarms": 1}
    assert await store.positions(device.id) == as_stored(fix)


async def test_an_alarm_stored_twice_gives_one_alarm_message(store: Store) -> None:
    device = await add_device(store)
    alarm = frame(device, sos(4, TS + 4, kind=AlarmKind.FALL))
    await commit_frames(store, [alarm])
    await commit_frames(store, [alarm])
    await commit_frames(store, [alarm._replace(received_at=alarm.received_at + 3), alarm])

    [message] = await outbox(store, TOPIC_ALARM)
    assert message["alarm_id"] is not None
    assert {k: message[k] for k in ("tenant_id", "device_id", "imei", "kind", "ts", "device_ts", "seq")} == {
        "tenant_id": device.tenant_id,
        "device_id": device.id,
        "imei": IMEI,
        "kind": "fall",
        "ts": TS + 4,
        "device_ts": TS + 4,
        "seq": 4,
    }
    assert (message["lat"], message["lon"], message["battery"]) == (43.6163, 7.0553, 55)


async def test_concurrent_commits_of_one_alarm_give_one_alarm_message(store: Store) -> None:
    # A device that reconnects may retransmit while its first copy is still being committed.
    device = await add_device(store)
    alarm = frame(device, sos(4, TS + 4))
    await asyncio.gather(
        *(commit_frames(store, [alarm._replace(received_at=alarm.received_at + n)]) for n in range(10))
    )
    assert len(await outbox(store, TOPIC_ALARM)) == 1
    assert (await count_stored(store, device.id))["alarms"] == 1


async def test_a_commit_is_all_or_nothing(store: Store) -> None:
    device = await add_device(store)
    await commit_frames(store, [])  # nothing to store is harmless
    assert await store.outbox_pending(10) == []
    # An alarm of a kind the store cannot name: whether the store takes the commit or
    # refuses it, it never keeps half of it.
    records = [frame(device, position(1, TS + 1)), frame(device, sos(2, TS + 2, kind=99))]
    try:
        await commit_frames(store, records)
    except Exception:
        assert await count_stored(store, device.id) == {"positions": 0, "heartbeats": 0, "activities": 0, "alarms": 0}
        assert await store.outbox_pending(10) == []
    else:
        assert await count_stored(store, device.id) == {"positions": 1, "heartbeats": 0, "activities": 0, "alarms": 1}


async def test_last_seen_is_the_latest_receive_time_of_a_commit(store: Store) -> None:
    device = await add_device(store)
    await commit_frames(
        store,
        [
            frame(device, sos(1, TS + 1), received_at=float(TS + 1)),
            frame(device, position(2, TS + 2), received_at=float(TS + 2)),
        ],
    )
    assert (await store.device(device.id)).last_seen == TS + 2  # type: ignore[union-attr]


async def test_an_alarm_with_a_bad_clock_and_fix_is_kept(store: Store) -> None:
    # A worker's SOS is never lost to a wrong clock or fix: the receive time stands in,
    # the location is unknown.
    device = await add_device(store)
    received = float(TS)
    bad = sos(1, TS + MAX_FUTURE_SKEW_S + 3600, lat=95 * 10**7)._replace(battery=255)  # 255: level unknown
    await commit_frames(store, [frame(device, bad, received)])
    [message] = await outbox(store, TOPIC_ALARM)
    assert (message["ts"], message["device_ts"]) == (TS, TS + MAX_FUTURE_SKEW_S + 3600)
    assert (message["lat"], message["lon"], message["battery"]) == (None, None, None)
    assert (await count_stored(store, device.id))["alarms"] == 1


async def test_a_commit_publishes_its_telemetry(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI, tenant="globex")
    await commit_frames(
        store,
        [
            frame(device, position(1, TS + 1)),
            frame(other, position(1, TS + 1, lat=LAT + 5)),
            frame(device, Heartbeat(2, TS + 2, 79, -70)),
        ],
    )
    [entry] = await store.outbox_pending(10)
    assert entry.topic == TOPIC_TELEMETRY
    positions = list(telemetry_items(entry.payload, "positions"))
    assert [(p["imei"], p["tenant_id"], p["seq"], p["lat_e7"]) for p in positions] == [
        (IMEI, device.tenant_id, 1, LAT),
        (OTHER_IMEI, other.tenant_id, 1, LAT + 5),
    ]
    assert [(h["imei"], h["battery"]) for h in telemetry_items(entry.payload, "heartbeats")] == [(IMEI, 79)]


async def test_a_commit_publishes_each_devices_newest_frames(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI, tenant="globex")
    buffered = FLAG_BUFFERED | FLAG_FIX_VALID
    await commit_frames(
        store,
        [
            frame(device, position(1, TS + 1)),
            frame(device, position(3, TS + 3, lat=LAT + 3)),
            frame(device, position(2, TS + 2, flags=buffered)),  # arrives last, yet is older
            frame(other, position(1, TS + 1, lat=LAT + 5)),
            frame(device, Heartbeat(4, TS + 4, 79, -70)),
            frame(device, Heartbeat(5, TS + 5, 78, -70)),
            frame(device, CommandResult(6, 1, 0)),
        ],
    )
    [latest] = await store.outbox_pending(10)

    positions = sorted((p["imei"], p["seq"], p["lat_e7"]) for p in telemetry_items(latest.payload, "positions"))
    assert positions == [(IMEI, 3, LAT + 3), (OTHER_IMEI, 1, LAT + 5)]
    assert [(h["seq"], h["battery"]) for h in telemetry_items(latest.payload, "heartbeats")] == [(5, 78)]
    assert list(telemetry_items(latest.payload, "command_results")) == []


async def test_positions_oldest_first_with_range_limit_and_cursor(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI)
    # Two fixes share a timestamp; buffered frames arrive after newer ones.
    events = [position(n, TS + 10 * (n // 2)) for n in range(12)]
    await commit_frames(store, [frame(device, e) for e in events[6:]])
    await commit_frames(store, [frame(device, e) for e in events[:6]] + [frame(other, position(99, TS + 30))])
    rows = as_stored(*events)

    assert await store.positions(device.id) == rows
    assert await store.positions(device.id, limit=4) == rows[:4]
    # since and until are inclusive
    assert await store.positions(device.id, since=TS + 10, until=TS + 30) == rows[2:8]
    assert await store.positions(device.id, since=TS + 11, until=TS + 29) == rows[4:6]
    assert await store.positions(device.id, since=TS + 1000) == []

    walked: list[StoredPosition] = []
    after: tuple[int, int] | None = None
    while page := await store.positions(device.id, after=after, limit=5):
        assert len(page) <= 5
        walked += page
        after = (page[-1].ts, page[-1].seq)
    assert walked == rows
    # the cursor splits two fixes of the same second, and combines with a range
    assert await store.positions(device.id, after=(TS + 20, 4), until=TS + 30) == rows[5:8]


async def test_older_buffered_frames_do_not_replace_the_last_fix_or_battery(store: Store) -> None:
    device = await add_device(store)
    now = time.time()
    await commit_frames(store, [frame(device, position(10, TS + 100, lat=LAT + 100, battery=60), now)])
    after_live = await store.device(device.id)
    assert after_live is not None
    assert (after_live.last_fix_ts, after_live.last_lat_e7, after_live.last_lon_e7, after_live.battery) == (
        TS + 100,
        LAT + 100,
        LON,
        60,
    )
    assert after_live.last_seen == now

    buffered = FLAG_FIX_VALID | FLAG_BUFFERED
    await commit_frames(
        store,
        [
            frame(device, position(5, TS + 50, lat=LAT + 50, battery=90, flags=buffered), now + 1),
            frame(device, Heartbeat(6, TS + 60, 95, -70), now + 1),
            frame(device, Activity(7, TS + 70, 10, 2, 90, 92, FLAG_BUFFERED), now + 1),
        ],
    )
    after_buffered = await store.device(device.id)
    assert after_buffered is not None
    assert (after_buffered.last_fix_ts, after_buffered.last_lat_e7, after_buffered.battery) == (TS + 100, LAT + 100, 60)
    assert after_buffered.last_seen == now + 1  # it was heard from, though

    # Newer readings do replace them; a position without a valid fix moves nothing.
    await commit_frames(
        store,
        [
            frame(device, position(11, TS + 110, lat=LAT + 110, battery=58), now + 2),
            frame(device, position(12, TS + 120, lat=LAT + 120, battery=57, flags=0), now + 2),
        ],
    )
    latest = await store.device(device.id)
    assert latest is not None
    assert (latest.last_fix_ts, latest.last_lat_e7, latest.battery) == (TS + 110, LAT + 110, 57)
    await commit_frames(store, [frame(device, Heartbeat(13, TS + 130, 55, -70), now + 3)])
    assert (await store.device(device.id)).battery == 55  # type: ignore[union-attr]

    # Within one commit too, the newest reading wins whatever the order of the frames.
    await commit_frames(
        store,
        [
            frame(device, position(15, TS + 150, lat=LAT + 150, battery=50), now + 4),
            frame(device, position(14, TS + 140, lat=LAT + 140, battery=52, flags=buffered), now + 4),
        ],
    )
    latest = await store.device(device.id)
    assert latest is not None
    assert (latest.last_fix_ts, latest.last_lat_e7, latest.battery) == (TS + 150, LAT + 150, 50)

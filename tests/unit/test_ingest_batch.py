"""The ingest batch (shared/store/batch.py): what a commit stores, and the views
every store adapter derives from it, the same whatever path the frames took."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.protocols.xsole import Activity, Alarm, CommandResult, Heartbeat, Position, encode
from shared.protocols.xsole.bulk import read_run
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.store.batch import BatchBuilder, DeviceRef, IngestBatch
from shared.store.messages import telemetry_message

NOW = 1_800_000_000.0
DEVICES = [
    DeviceRef(1, 10, "356307042441013"),
    DeviceRef(2, 10, "356307042441021"),
    DeviceRef(3, 11, "356307042441039"),
]
ts = st.integers(1_799_990_000, 1_799_990_020)  # a narrow range: ties happen
battery = st.sampled_from([10, 55, 100, 101, 255])  # above 100: unknown
telemetry = st.one_of(
    st.builds(
        Position,
        st.integers(0, 0xFFFF),
        ts,
        st.integers(-900_000_000, 900_000_000),
        st.integers(-1_800_000_000, 1_800_000_000),
        st.just(12),
        st.just(140),
        st.just(900),
        st.just(9),
        st.just(11),
        battery,
        st.sampled_from([0, FLAG_FIX_VALID, 2, FLAG_FIX_VALID | 2]),
    ),
    st.builds(Heartbeat, st.integers(0, 0xFFFF), ts, battery, st.just(-60)),
    st.builds(Activity, st.integers(0, 0xFFFF), ts, st.just(10), st.just(0), st.just(1), battery, st.just(0)),
    st.builds(CommandResult, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 2)),
)
# (device, event, received_at), in arrival order: received_at never goes back.
arrivals = st.lists(st.tuples(st.sampled_from(DEVICES), telemetry, st.integers(0, 2)), min_size=1, max_size=30).map(
    lambda items: [
        (device, event, NOW + sum(i[2] for i in items[: n + 1])) for n, (device, event, _) in enumerate(items)
    ]
)

KIND_RANK = {Position: 0, Heartbeat: 1, Activity: 2}


def as_runs(items: list[tuple[DeviceRef, Any, float]]) -> IngestBatch:
    """The same frames as the hot path hands them over: consecutive frames of one
    device received together make one run."""
    builder = BatchBuilder()
    for (device, received_at), group in itertools.groupby(items, key=lambda i: (i[0], i[2])):
        builder.add_run(device, read_run(b"".join(encode(event) for _, event, _ in group)), received_at)
    return builder.build()


def as_events(items: list[tuple[DeviceRef, Any, float]]) -> IngestBatch:
    return IngestBatch.from_events((d.id, d.tenant_id, d.imei, event, received_at) for d, event, received_at in items)


def expected_readings(items: list[tuple[DeviceRef, Any, float]]) -> dict[int, Any]:
    """Device state the slow way: the newest reading by device time; on a tie the
    later kind (position, heartbeat, activity) for the battery, then the later received."""
    readings: dict[int, Any] = {}
    for device in {d for d, _, _ in items}:
        mine = [(n, event, at) for n, (d, event, at) in enumerate(items) if d == device]
        levels = [
            (event.ts, KIND_RANK[type(event)], n, event.battery)
            for n, event, _ in mine
            if type(event) in KIND_RANK and event.battery <= 100
        ]
        fixes = [
            (event.ts, n, event.lat_e7, event.lon_e7)
            for n, event, _ in mine
            if type(event) is Position and event.flags & FLAG_FIX_VALID
        ]
        level, fix = max(levels, default=None), max(fixes, default=None)
        readings[device.id] = (
            max(at for _, _, at in mine),
            (level[0], level[3]) if level else None,
            (fix[0], fix[2], fix[3]) if fix else None,
        )
    return readings


@settings(max_examples=300, deadline=None)
@given(arrivals)
def test_runs_and_single_frames_give_the_same_views(items: list[tuple[DeviceRef, Any, float]]) -> None:
    runs, events = as_runs(items), as_events(items)

    assert runs.frames == events.frames == len(items)
    assert runs.tables == events.tables
    assert runs.readings == events.readings == expected_readings(items)
    assert telemetry_message(runs) == telemetry_message(events)


def test_a_batch_of_runs_alone_has_device_readings() -> None:
    device = DEVICES[0]
    frames: list[Position | Heartbeat] = [
        Position(1, 1_799_990_010, 436163000, 70553000, 12, 140, 900, 9, 11, 70, FLAG_FIX_VALID),
        Heartbeat(2, 1_799_990_005, 99, -60),  # older: buffered
    ]
    builder = BatchBuilder()
    builder.add_run(device, read_run(b"".join(map(encode, frames))), NOW)

    batch = builder.build()

    assert batch.readings == {device.id: (NOW, (1_799_990_010, 70), (1_799_990_010, 436163000, 70553000))}
    assert batch.devices == {device.id: device}
    assert batch.runs[0].run.seqs == [1, 2]


def test_alarms_are_kept_apart_and_count_as_heard_from() -> None:
    device = DEVICES[1]
    alarm = Alarm(9, 1_799_990_010, 1, 436163000, 70553000, 60, FLAG_FIX_VALID)
    batch = as_events([(device, alarm, NOW)])

    assert batch.runs == () and [a.alarm for a in batch.alarms] == [alarm]
    assert batch.frames == 1
    assert batch.readings == {device.id: (NOW, None, None)}
    assert telemetry_message(batch) is None

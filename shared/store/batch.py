"""What one commit stores: the frames accepted from every connection, immutable.

The listener's committer fills a `BatchBuilder` as transports hand frames
over (runs of frames from the hot path, single events from the general path)
and seals it into an `IngestBatch` when its turn to be made durable comes.
The batch holds what the protocol decoded, in its own terms (see
`shared.protocols.xsole.bulk.TelemetryRun`), and nothing of any store's
layout: each storage adapter derives its own (SQLite its runs of frames,
MongoDB its documents), and the views every adapter needs are derived here,
once per batch: the frames by type across devices (`tables`), each device's
newest frame of a type (`newest`), and its state (`readings`: last seen,
battery, last fix), whatever path its frames took.

Those views cost C-level passes over the batch, no Python per frame: at tens
of thousands of frames a second, per-frame Python was what bounded ingestion.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from itertools import chain, compress, repeat
from operator import and_, attrgetter, itemgetter, methodcaller
from typing import NamedTuple

from shared.protocols.xsole import Activity, Alarm, CommandResult, DeviceEvent, FrameType, Heartbeat, Login, Position
from shared.protocols.xsole.bulk import HOT_TYPES, Fields, TelemetryRun, run_of_one
from shared.protocols.xsole.constants import FLAG_FIX_VALID


class DeviceRef(NamedTuple):
    """Which device frames came from: what a commit needs to know of it."""

    id: int
    tenant_id: int
    imei: str


class DeviceRun(NamedTuple):
    """A run of telemetry frames from one device, and when it was received."""

    device: DeviceRef
    run: TelemetryRun
    received_at: float


class DeviceAlarm(NamedTuple):
    """An ALARM frame from one device, and when it was received."""

    device: DeviceRef
    alarm: Alarm
    received_at: float


class FrameTable(NamedTuple):
    """One frame type's frames across a batch, in arrival order, as parallel
    lists: each frame's fields (its event's layout), its device's id, and when
    it was received."""

    fields: list[Fields]
    device_ids: list[int]
    received_at: list[float]


# What the general path hands over: any frame a device sends but a LOGIN.
TelemetryEvent = Position | Heartbeat | Activity | Alarm | CommandResult

STORED_UNKNOWN_BATTERY = 255  # how a frame stored as a run says its battery level is unknown

# Per device of a batch: when last heard from, its newest battery level as
# (ts, level), and its newest valid fix as (ts, lat_e7, lon_e7).
Reading = tuple[float, "tuple[int, int] | None", "tuple[int, int, int] | None"]

_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__: one per run
_DEVICE = itemgetter(0)
_RUN = itemgetter(1)
_RECEIVED = itemgetter(2)
_ID = attrgetter("id")
_SEQS = attrgetter("seqs")
_FIELDS_BY_TYPE = attrgetter("fields_by_type")
_TS_AT = Position._fields.index("ts")  # the same in every frame type with a ts
_TS = itemgetter(_TS_AT)
_BATTERY_AT = {
    FrameType.POSITION: Position._fields.index("battery"),
    FrameType.HEARTBEAT: Heartbeat._fields.index("battery"),
    FrameType.ACTIVITY: Activity._fields.index("battery"),
}
_FLAGS = itemgetter(Position._fields.index("flags"))
_LAT_AT, _LON_AT = Position._fields.index("lat_e7"), Position._fields.index("lon_e7")
_OF_TYPE = {frame_type: methodcaller("get", frame_type, ()) for frame_type in HOT_TYPES}
_ALL_OF_TYPE = {frame_type: itemgetter(frame_type) for frame_type in HOT_TYPES}


@dataclass(frozen=True)
class IngestBatch:
    """The frames of one commit: telemetry as runs (a frame that took the
    general path is a run of one), in arrival order, and the alarms apart
    (each is stored and announced on its own). Build one with `BatchBuilder`
    or `IngestBatch.from_events`."""

    runs: tuple[DeviceRun, ...] = ()
    alarms: tuple[DeviceAlarm, ...] = ()

    @classmethod
    def from_events(cls, records: Iterable[tuple[int, int, str, DeviceEvent, float]]) -> IngestBatch:
        """A batch of single frames, each as (device id, tenant id, IMEI, event,
        received at), which is a `FrameRecord`: what tests and tools commit."""
        builder = BatchBuilder()
        for device_id, tenant_id, imei, event, received_at in records:
            if isinstance(event, Login):
                raise TypeError("a LOGIN is not stored")
            builder.add_event(DeviceRef(device_id, tenant_id, imei), event, received_at)
        return builder.build()

    @cached_property
    def frames(self) -> int:
        return sum(map(len, map(_SEQS, map(_RUN, self.runs)))) + len(self.alarms)

    @cached_property
    def devices(self) -> dict[int, DeviceRef]:
        """Every device with frames in the batch, by id."""
        refs = list(chain(map(_DEVICE, self.runs), map(_DEVICE, self.alarms)))
        return dict(zip(map(_ID, refs), refs, strict=True))

    @cached_property
    def frames_by_type(self) -> dict[int, int]:
        """How many frames of each type the batch holds (alarms included)."""
        counts = {frame_type: len(table.fields) for frame_type, table in self.tables.items()}
        if self.alarms:
            counts[FrameType.ALARM] = len(self.alarms)
        return counts

    @cached_property
    def run_device_ids(self) -> list[int]:
        """The device id of each run, in the order of `runs`."""
        return list(map(_ID, map(_DEVICE, self.runs)))

    @cached_property
    def run_received_at(self) -> list[float]:
        """When each run was received, in the order of `runs`."""
        return list(map(_RECEIVED, self.runs))

    @cached_property
    def tables(self) -> dict[int, FrameTable]:
        """The telemetry frames by type (only the types present), across devices."""
        by_type = list(map(_FIELDS_BY_TYPE, map(_RUN, self.runs)))
        device_ids, received = self.run_device_ids, self.run_received_at
        present = set(chain.from_iterable(by_type))  # most batches hold a type or two
        tables: dict[int, FrameTable] = {}
        for frame_type in HOT_TYPES:
            if frame_type not in present:
                continue
            # Every run holds the type when it is the only one (a run is never empty).
            of_type = _ALL_OF_TYPE[frame_type] if len(present) == 1 else _OF_TYPE[frame_type]
            per_run = list(map(of_type, by_type))
            counts = list(map(len, per_run))
            if counts.count(1) == len(counts):  # a frame per run (a window of one): nothing to repeat
                tables[frame_type] = FrameTable(list(chain.from_iterable(per_run)), device_ids[:], received[:])
            else:
                tables[frame_type] = FrameTable(
                    list(chain.from_iterable(per_run)),
                    list(chain.from_iterable(map(repeat, device_ids, counts))),
                    list(chain.from_iterable(map(repeat, received, counts))),
                )
        return tables

    @cached_property
    def _time_order(self) -> dict[int, list[int]]:
        """Per frame type with a ts: the indices of its table's frames sorted by
        device time, ties in arrival order (a stable sort)."""
        order: dict[int, list[int]] = {}
        for frame_type, table in self.tables.items():
            if frame_type != FrameType.COMMAND_RESULT:
                times = list(map(_TS, table.fields))
                order[frame_type] = sorted(range(len(times)), key=times.__getitem__)
        return order

    def newest(self, frame_type: int) -> dict[int, int]:
        """Per device: the index in `tables[frame_type]` of its newest frame of
        that type, by device time (the later one received on a tie), since
        buffered frames arrive late. Only for the types with a ts."""
        order = self._time_order.get(frame_type)
        if order is None:
            return {}
        return _last_of_each_device(self.tables[frame_type], order)

    @cached_property
    def readings(self) -> dict[int, Reading]:
        """Per device of the batch: when last heard from, its newest battery level
        and its newest valid fix, by device time (see `Reading`)."""
        # Runs are in arrival order: a device's last one was received last.
        last_seen = dict(zip(self.run_device_ids, self.run_received_at, strict=True))
        for device, _, received_at in self.alarms:
            last_seen[device.id] = max(received_at, last_seen.get(device.id, 0.0))
        battery: dict[int, tuple[int, int]] = {}
        newest_fix: dict[int, tuple[int, int, int]] = {}
        tables, time_order = self.tables, self._time_order
        for frame_type, battery_at in _BATTERY_AT.items():
            table = tables.get(frame_type)
            if table is None:
                continue
            fields, order = table.fields, time_order[frame_type]
            levels = order
            # Above 100: level unknown (a tracker's BATTERY_UNKNOWN arrives as 255, see add_event), so
            # it does not replace the device's last known one.
            if max(map(itemgetter(battery_at), fields)) > 100:
                levels = [i for i in order if fields[i][battery_at] <= 100]
            for device_id, i in _last_of_each_device(table, levels).items():
                row = fields[i]
                known = battery.get(device_id)
                if known is None or row[_TS_AT] >= known[0]:
                    battery[device_id] = (row[_TS_AT], row[battery_at])
            if frame_type == FrameType.POSITION:
                flags = list(map(_FLAGS, fields))
                fixes = list(compress(order, map(and_, map(flags.__getitem__, order), repeat(FLAG_FIX_VALID))))
                for device_id, i in _last_of_each_device(table, fixes).items():
                    row = fields[i]
                    newest_fix[device_id] = (row[_TS_AT], row[_LAT_AT], row[_LON_AT])
        return {
            device_id: (seen, battery.get(device_id), newest_fix.get(device_id))
            for device_id, seen in last_seen.items()
        }


def _last_of_each_device(table: FrameTable, indices: list[int]) -> dict[int, int]:
    """Each device's last index among `indices` (C-level calls only: this runs
    over every frame of every commit)."""
    return dict(zip(map(table.device_ids.__getitem__, indices), indices, strict=True))


class BatchBuilder:
    """An `IngestBatch` being filled, frame by frame or run by run."""

    __slots__ = ("alarms", "runs")

    def __init__(self) -> None:
        self.runs: list[DeviceRun] = []
        self.alarms: list[DeviceAlarm] = []

    def add_run(self, device: DeviceRef, run: TelemetryRun, received_at: float) -> None:
        self.runs.append(_new_tuple(DeviceRun, (device, run, received_at)))

    def add_event(self, device: DeviceRef, event: TelemetryEvent, received_at: float) -> None:
        """One frame from the general path."""
        if isinstance(event, Alarm):
            self.alarms.append(DeviceAlarm(device, event, received_at))
            return
        if not isinstance(event, CommandResult) and event.battery < 0:
            # A tracker's BATTERY_UNKNOWN (-1): runs keep the XSole frame's bytes, whose battery is a
            # u8; above 100 reads as "no level" everywhere (readings, API, detection), as -1 would.
            event = event._replace(battery=STORED_UNKNOWN_BATTERY)
        self.runs.append(DeviceRun(device, run_of_one(event), received_at))

    def build(self) -> IngestBatch:
        return IngestBatch(tuple(self.runs), tuple(self.alarms))

"""The outbox messages a commit produces, identical for every store adapter.

Topics: `telemetry` carries each device's newest position, heartbeat and
activity of one commit (one message per commit keeps the bus cheap); `alarm`
carries one newly stored ALARM, exactly once per alarm.

A telemetry message is a table per frame kind, `{"columns": [...], "rows":
[[...], ...]}`, with the wire's integer units, plus `devices` mapping each
device id to its tenant and IMEI: the very rows the store inserts, since
building a dict per frame cost more than storing the frame. `telemetry_items`
turns it back into dicts for consumers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import and_, itemgetter
from typing import Any, cast

import orjson

# Re-exported: the store adapters name the outbox topics from here.
from shared.bus.topics import TOPIC_ALARM as TOPIC_ALARM
from shared.bus.topics import TOPIC_TELEMETRY as TOPIC_TELEMETRY
from shared.protocols.xsole import Activity, Alarm, AlarmKind, CommandResult, FrameType, Heartbeat, Position, encode
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.protocols.xsole.validation import alarm_fix
from shared.store.port import FrameRecord

# Row layout shared by the telemetry tables and messages: the device's id, the
# event's own fields in wire order (seq first), then when it was received.
COLUMNS: dict[str, tuple[str, ...]] = {
    "positions": ("device_id", *Position._fields, "received_at"),
    "heartbeats": ("device_id", *Heartbeat._fields, "received_at"),
    "activities": ("device_id", *Activity._fields, "received_at"),
    "command_results": ("device_id", *CommandResult._fields, "received_at"),
}
_KIND_OF = {Position: "positions", Heartbeat: "heartbeats", Activity: "activities", CommandResult: "command_results"}
# The telemetry kept as history and published (command results only update their command).
TELEMETRY_EVENTS: dict[str, Any] = {"positions": Position, "heartbeats": Heartbeat, "activities": Activity}
TELEMETRY_KIND_OF_TYPE = {
    FrameType.POSITION: "positions",
    FrameType.HEARTBEAT: "heartbeats",
    FrameType.ACTIVITY: "activities",
}
# (device id, first device ts, last device ts, received at, the frames' bytes as received)
StoredRun = tuple[int, int, int, float, bytes]
KIND_OF_TYPE = {**TELEMETRY_KIND_OF_TYPE, FrameType.COMMAND_RESULT: "command_results"}


@dataclass(slots=True)
class Telemetry:
    """A commit's frames sorted by kind: rows ready to store and to publish.

    The listener's hot path appends rows straight into `tables` (see
    `shared.protocols.xsole.bulk`); frames that took the general path come in
    as records through `add`.
    """

    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    devices: dict[int, tuple[int, str]] = field(default_factory=dict)  # device id -> (tenant id, IMEI)
    alarms: list[FrameRecord] = field(default_factory=list)
    time_ordered: bool = False  # every table sorted by device time (see `order_by_time`)
    # Device id -> when its last row was received; kept by `order_by_time`, since
    # rows are in arrival order only until then.
    last_received: dict[int, float] = field(default_factory=dict)
    # The same frames (alarms and command results aside) as received, for a store
    # that keeps them that way (SQLite); None: not captured, `frame_runs` builds them.
    runs: list[StoredRun] | None = None

    def rows(self, kind: str) -> list[tuple[Any, ...]]:
        return self.tables.get(kind, [])

    def add(self, record: FrameRecord) -> None:
        event = record.event
        kind = _KIND_OF.get(type(event))
        if kind is None:
            self.alarms.append(record)
        else:
            rows = self.tables.get(kind)
            if rows is None:
                rows = self.tables[kind] = []
            rows.append((record.device_id, *event, record.received_at))  # type: ignore[misc]  # telemetry events are tuples
            if self.runs is not None and kind != "command_results":
                ts = event.ts  # type: ignore[union-attr]
                self.runs.append((record.device_id, ts, ts, record.received_at, encode(event)))  # type: ignore[arg-type]
        self.devices[record.device_id] = (record.tenant_id, record.imei)

    def frame_runs(self) -> list[StoredRun]:
        """The commit's positions, heartbeats and activities as runs of frames:
        as the listener received them, or one frame per run rebuilt from the rows."""
        if self.runs is None:
            self.runs = [
                (row[0], row[_TS_AT], row[_TS_AT], row[-1], encode(event_class(*row[1:-1])))
                for kind, event_class in TELEMETRY_EVENTS.items()
                for row in self.rows(kind)
            ]
        return self.runs

    @property
    def frames(self) -> int:
        return sum(map(len, self.tables.values())) + len(self.alarms)

    def order_by_time(self) -> None:
        """Sort every table by device time (then arrival), once.

        Each device's last row is then its newest, which is how `device_readings`
        and `telemetry_message` find it without a pass of Python per row."""
        if self.time_ordered:
            return
        last_received = self.last_received
        for rows in self.tables.values():
            # A device's rows are in arrival order here: its last one was received last.
            for device_id, received_at in dict(zip(map(_DEVICE, rows), map(_RECEIVED, rows), strict=True)).items():
                if received_at > last_received.get(device_id, 0.0):
                    last_received[device_id] = received_at
            rows.sort(key=_TS)
        self.time_ordered = True

    def drop_empty_tables(self) -> None:
        self.tables = {kind: rows for kind, rows in self.tables.items() if rows}


def split_telemetry(records: Iterable[FrameRecord]) -> Telemetry:
    """The records of a commit, sorted by kind."""
    telemetry = Telemetry()
    for record in records:
        telemetry.add(record)
    return telemetry


_BATTERY_AT = {kind: COLUMNS[kind].index("battery") for kind in ("positions", "heartbeats", "activities")}
_TS_AT = COLUMNS["positions"].index("ts")  # the same in every telemetry table
_FLAGS_AT = COLUMNS["positions"].index("flags")
_LAT_AT = COLUMNS["positions"].index("lat_e7")
_LON_AT = COLUMNS["positions"].index("lon_e7")
_DEVICE = itemgetter(0)
_RECEIVED = itemgetter(-1)
_TS = itemgetter(_TS_AT)
_FLAGS = itemgetter(_FLAGS_AT)

Reading = tuple[float, "tuple[int, int] | None", "tuple[int, int, int] | None"]


def _newest(time_ordered_rows: list[tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
    """Each device's newest row by device time (the later one received on a tie):
    its last one in time order. C-level calls only, since this runs over
    every frame of every commit."""
    return dict(zip(map(_DEVICE, time_ordered_rows), time_ordered_rows, strict=True))


def device_readings(telemetry: Telemetry) -> dict[int, Reading]:
    """Per device of a commit: when last heard from, its newest battery level as
    (ts, level), and its newest valid fix as (ts, lat_e7, lon_e7). Buffered frames
    arrive late, so "newest" is by device time, not by arrival."""
    battery: dict[int, tuple[int, int]] = {}
    newest_fix: dict[int, tuple[int, int, int]] = {}
    telemetry.order_by_time()
    last_seen = dict(telemetry.last_received)
    for kind in COLUMNS:
        rows = telemetry.rows(kind)
        if not rows:
            continue
        battery_at = _BATTERY_AT.get(kind)
        if battery_at is None:
            continue  # command results carry no battery
        levels = rows
        if max(map(itemgetter(battery_at), rows)) > 100:  # above 100: level unknown
            levels = [row for row in rows if row[battery_at] <= 100]
        for device_id, row in _newest(levels).items():
            known = battery.get(device_id)
            if known is None or row[_TS_AT] >= known[0]:
                battery[device_id] = (row[_TS_AT], row[battery_at])
        if kind == "positions":
            fixes = list(compress(rows, map(and_, map(_FLAGS, rows), repeat(FLAG_FIX_VALID))))  # C-level filter
            for device_id, row in _newest(fixes).items():
                newest_fix[device_id] = (row[_TS_AT], row[_LAT_AT], row[_LON_AT])
    for record in telemetry.alarms:
        last_seen[record.device_id] = max(record.received_at, last_seen.get(record.device_id, 0.0))
    return {
        device_id: (seen, battery.get(device_id), newest_fix.get(device_id)) for device_id, seen in last_seen.items()
    }


PUBLISHED_KINDS = tuple(TELEMETRY_EVENTS)


def telemetry_message(telemetry: Telemetry) -> bytes | None:
    """The message for a commit's telemetry: each device's newest position,
    heartbeat and activity, or None when there are none.

    A commit holds several frames per device when a device has a window of
    frames in flight or uploads a backlog after a coverage gap. What consumers
    do with telemetry needs only the newest: detection judges the device's
    current state, and the live map shows where the worker is now (older
    positions are history, served by the REST API). Publishing every frame
    cost as much as storing it: the outbox held each commit twice.
    """
    telemetry.order_by_time()
    tables = {kind: list(_newest(rows).values()) for kind in PUBLISHED_KINDS if (rows := telemetry.rows(kind))}
    if not tables:
        return None
    message: dict[str, Any] = {kind: {"columns": COLUMNS[kind], "rows": rows} for kind, rows in tables.items()}
    message["devices"] = {
        str(device_id): telemetry.devices[device_id]
        for device_id in {row[0] for rows in tables.values() for row in rows}
    }
    return orjson.dumps(message)


def telemetry_items(payload: bytes, kind: str) -> Iterator[dict[str, Any]]:
    """The frames of one kind in a telemetry message, as dicts keyed by column,
    with the device's tenant id and IMEI added."""
    message = orjson.loads(payload)
    table = message.get(kind)
    if table is None:
        return
    devices = message["devices"]
    columns = table["columns"]
    for row in table["rows"]:
        item = dict(zip(columns, row, strict=True))
        item["tenant_id"], item["imei"] = devices[str(item["device_id"])]
        yield item


def alarm_message(record: FrameRecord, alarm_id: int, ts: int) -> bytes:
    event = record.event
    assert isinstance(event, Alarm)
    fix = alarm_fix(event)
    return orjson.dumps(
        {
            "alarm_id": alarm_id,
            "tenant_id": record.tenant_id,
            "device_id": record.device_id,
            "imei": record.imei,
            "kind": AlarmKind(event.kind).alert_kind,
            "ts": ts,
            "device_ts": event.ts,
            "seq": event.seq,
            "lat": fix[0] / 1e7 if fix else None,
            "lon": fix[1] / 1e7 if fix else None,
            "battery": event.battery if event.battery <= 100 else None,
            "buffered": event.buffered,
            "received_at": record.received_at,
        }
    )


# -- ingest: frames a listener made durable on the bus, for the storage writer ------------

# The codes of the older list-of-frames layout.
_EVENT_TYPES: tuple[type, ...] = (Position, Heartbeat, Activity, Alarm, CommandResult)


def ingest_message(telemetry: Telemetry) -> bytes:
    """A batch of accepted frames as one bus message: the telemetry tables as
    they are, the devices, and each alarm as `[device, tenant, imei, [fields], received_at]`."""
    return orjson.dumps(
        {
            "tables": {kind: rows for kind, rows in telemetry.tables.items() if rows},
            "devices": {str(device_id): ids for device_id, ids in telemetry.devices.items()},
            "alarms": [
                [r.device_id, r.tenant_id, r.imei, [*cast(tuple[Any, ...], r.event)], r.received_at]
                for r in telemetry.alarms
            ],
        }
    )


def ingest_telemetry(payload: bytes) -> Telemetry:
    """The frames of an ingest message; raises ValueError on anything else (a poison message)."""
    try:
        message = orjson.loads(payload)
        if isinstance(message, list):  # the list-of-frames layout that queues may still hold from older listeners
            return split_telemetry(
                FrameRecord(int(device_id), int(tenant_id), str(imei), _EVENT_TYPES[code](*fields), float(received_at))
                for device_id, tenant_id, imei, code, fields, received_at in message
            )
        tables = {}
        for kind, rows in message["tables"].items():
            width = len(COLUMNS[kind])
            tables[kind] = [tuple(row) for row in rows]
            if any(len(row) != width or not all(isinstance(v, int | float) for v in row) for row in tables[kind]):
                raise ValueError(f"a {kind} row is not {width} numbers")
        return Telemetry(
            tables=tables,
            devices={
                int(device_id): (int(tenant_id), str(imei))
                for device_id, (tenant_id, imei) in message["devices"].items()
            },
            alarms=[
                FrameRecord(int(device_id), int(tenant_id), str(imei), Alarm(*fields), float(received_at))
                for device_id, tenant_id, imei, fields, received_at in message["alarms"]
            ],
        )
    except (
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
    ) as exc:  # orjson.JSONDecodeError is a ValueError
        raise ValueError(f"not an ingest message: {exc!r}") from exc

"""The outbox messages a commit produces, identical for every store adapter.

Topics: `telemetry` carries one commit's positions, heartbeats, activity and
command results (many frames per message keeps the bus cheap); `alarm` carries
one newly stored ALARM, exactly once per alarm.

A telemetry message is a table per frame kind, `{"columns": [...], "rows":
[[...], ...]}`, with the wire's integer units, plus `devices` mapping each
device id to its tenant and IMEI: the very rows the store inserts, since
building a dict per frame cost more than storing the frame. `telemetry_items`
turns it back into dicts for consumers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

# Re-exported: the store adapters name the outbox topics from here.
from shared.bus.topics import TOPIC_ALARM as TOPIC_ALARM
from shared.bus.topics import TOPIC_TELEMETRY as TOPIC_TELEMETRY
from shared.protocols.xsole import Activity, Alarm, AlarmKind, CommandResult, Heartbeat, Position
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


@dataclass(slots=True)
class Telemetry:
    """One commit's frames sorted by kind: rows ready to store and to publish."""

    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    devices: dict[int, tuple[int, str]] = field(default_factory=dict)  # device id -> (tenant id, IMEI)
    alarms: list[FrameRecord] = field(default_factory=list)

    def rows(self, kind: str) -> list[tuple[Any, ...]]:
        return self.tables.get(kind, [])


def split_telemetry(records: Iterable[FrameRecord]) -> Telemetry:
    """One pass over a commit's records; the only per-frame work besides the insert."""
    telemetry = Telemetry()
    tables, devices = telemetry.tables, telemetry.devices
    kind_of = _KIND_OF
    for record in records:
        event = record.event
        kind = kind_of.get(type(event))
        if kind is None:
            telemetry.alarms.append(record)
        else:
            rows = tables.get(kind)
            if rows is None:
                rows = tables[kind] = []
            rows.append((record.device_id, *event, record.received_at))  # type: ignore[misc]  # telemetry events are tuples
        devices[record.device_id] = (record.tenant_id, record.imei)
    return telemetry


def telemetry_message(telemetry: Telemetry) -> bytes | None:
    """One message for a commit's non-alarm frames, or None when there are none."""
    if not telemetry.tables:
        return None
    message: dict[str, Any] = {kind: {"columns": COLUMNS[kind], "rows": rows} for kind, rows in telemetry.tables.items()}
    message["devices"] = {str(device_id): ids for device_id, ids in telemetry.devices.items()}
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
    return orjson.dumps({
        "alarm_id": alarm_id, "tenant_id": record.tenant_id, "device_id": record.device_id,
        "imei": record.imei, "kind": AlarmKind(event.kind).alert_kind, "ts": ts, "device_ts": event.ts,
        "seq": event.seq, "lat": fix[0] / 1e7 if fix else None, "lon": fix[1] / 1e7 if fix else None,
        "battery": event.battery if event.battery <= 100 else None, "buffered": event.buffered,
        "received_at": record.received_at,
    })


# -- ingest: frames a listener made durable on the bus, for the storage writer ------------

_EVENT_TYPES: tuple[type, ...] = (Position, Heartbeat, Activity, Alarm, CommandResult)
_EVENT_CODE = {cls: code for code, cls in enumerate(_EVENT_TYPES)}


def ingest_message(records: Iterable[FrameRecord]) -> bytes:
    """A batch of accepted frames as one bus message: `[[device, tenant, imei, kind, [fields], received_at], ...]`."""
    return orjson.dumps([
        [r.device_id, r.tenant_id, r.imei, _EVENT_CODE[type(r.event)], [*cast(tuple[Any, ...], r.event)], r.received_at]
        for r in records
    ])


def ingest_records(payload: bytes) -> list[FrameRecord]:
    """The frames of an ingest message; raises ValueError on anything else (a poison message)."""
    try:
        return [
            FrameRecord(int(device_id), int(tenant_id), str(imei), _EVENT_TYPES[code](*fields), float(received_at))
            for device_id, tenant_id, imei, code, fields, received_at in orjson.loads(payload)
        ]
    except (TypeError, IndexError) as exc:
        raise ValueError(f"not an ingest message: {exc}") from exc

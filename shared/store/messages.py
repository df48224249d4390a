"""The outbox messages a commit produces, identical for every store adapter.

Topics: `telemetry` carries each device's newest position, heartbeat and
activity of one commit (one message per commit keeps the bus cheap); `alarm`
carries one newly stored ALARM, exactly once per alarm.

A telemetry message is a table per frame kind, `{"columns": [...], "rows":
[[...], ...]}`, with the wire's integer units, plus `devices` mapping each
device id to its tenant and IMEI: a row per device and kind, so that building
it costs nothing per frame. `telemetry_items` turns it back into dicts for
consumers.
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import itemgetter
from typing import Any

import orjson

# Re-exported: the store adapters name the outbox topics from here.
from shared.bus.topics import TOPIC_ALARM as TOPIC_ALARM
from shared.bus.topics import TOPIC_TELEMETRY as TOPIC_TELEMETRY
from shared.protocols.xsole import Activity, AlarmKind, CommandResult, FrameType, Heartbeat, Position
from shared.protocols.xsole.validation import alarm_fix
from shared.store.batch import DeviceAlarm, IngestBatch

# Row layout shared by the telemetry tables and messages: the device's id, the
# event's own fields in wire order (seq first), then when it was received.
COLUMNS: dict[str, tuple[str, ...]] = {
    "positions": ("device_id", *Position._fields, "received_at"),
    "heartbeats": ("device_id", *Heartbeat._fields, "received_at"),
    "activities": ("device_id", *Activity._fields, "received_at"),
    "command_results": ("device_id", *CommandResult._fields, "received_at"),
}
# The telemetry kept as history and published (command results only update their command).
TELEMETRY_EVENTS: dict[str, Any] = {"positions": Position, "heartbeats": Heartbeat, "activities": Activity}
TELEMETRY_KIND_OF_TYPE: dict[int, str] = {
    FrameType.POSITION: "positions",
    FrameType.HEARTBEAT: "heartbeats",
    FrameType.ACTIVITY: "activities",
}
KIND_OF_TYPE = {**TELEMETRY_KIND_OF_TYPE, FrameType.COMMAND_RESULT: "command_results"}


_TENANT_AND_IMEI = itemgetter(slice(1, None))  # of a DeviceRef


def telemetry_message(batch: IngestBatch) -> bytes | None:
    """The message for a commit's telemetry: each device's newest position,
    heartbeat and activity, or None when there are none.

    A commit holds several frames per device when a device has a window of
    frames in flight or uploads a backlog after a coverage gap. What consumers
    do with telemetry needs only the newest: detection judges the device's
    current state, and the live map shows where the worker is now (older
    positions are history, served by the REST API). Publishing every frame
    cost as much as storing it: the outbox held each commit twice.
    """
    tables: dict[str, list[tuple[Any, ...]]] = {}
    device_ids: set[int] = set()
    for frame_type, kind in TELEMETRY_KIND_OF_TYPE.items():
        newest = batch.newest(frame_type)
        if newest:
            device_ids.update(newest)
            fields, received_at = batch.tables[frame_type].fields, batch.tables[frame_type].received_at
            tables[kind] = [(device_id, *fields[i], received_at[i]) for device_id, i in newest.items()]
    if not tables:
        return None
    message: dict[str, Any] = {kind: {"columns": COLUMNS[kind], "rows": rows} for kind, rows in tables.items()}
    # Keyed by the ids as ints, which orjson writes as strings: no str() per device.
    devices = map(_TENANT_AND_IMEI, map(batch.devices.__getitem__, device_ids))
    message["devices"] = dict(zip(device_ids, devices, strict=True))
    return orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS)


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


def alarm_message(alarm: DeviceAlarm, alarm_id: int, ts: int) -> bytes:
    device, event, received_at = alarm
    fix = alarm_fix(event)
    return orjson.dumps(
        {
            "alarm_id": alarm_id,
            "tenant_id": device.tenant_id,
            "device_id": device.id,
            "imei": device.imei,
            "kind": AlarmKind(event.kind).alert_kind,
            "ts": ts,
            "device_ts": event.ts,
            "seq": event.seq,
            "lat": fix[0] / 1e7 if fix else None,
            "lon": fix[1] / 1e7 if fix else None,
            "battery": event.battery if 0 <= event.battery <= 100 else None,  # -1: a tracker did not say
            "buffered": event.buffered,
            "received_at": received_at,
        }
    )


def message_without_device(topic: str, payload: bytes, device_id: int, imei: str) -> bytes | None:
    """An outbox message with nothing left of an erased device: the same bytes when it never named
    it, None when it was all about it (an alarm, an alert change), a telemetry message without the
    device's rows otherwise (the other devices' live updates still go)."""
    if imei.encode() not in payload:  # every message naming a device names its IMEI
        return payload
    message = orjson.loads(payload)
    if topic != TOPIC_TELEMETRY:
        about = message.get("alert", message)
        return None if about.get("imei") == imei or about.get("device_id") == device_id else payload
    message["devices"].pop(str(device_id), None)
    for kind in COLUMNS:
        table = message.get(kind)
        if table is not None:
            table["rows"] = [row for row in table["rows"] if row[0] != device_id]
            if not table["rows"]:
                del message[kind]
    if not message["devices"]:
        return None
    return orjson.dumps(message)

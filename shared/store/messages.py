"""The outbox messages a commit produces, identical for every store adapter.

Topics: `telemetry` carries one commit's positions, heartbeats, activity and
command results (many frames per message keeps the bus cheap); `alarm` carries
one newly stored ALARM, exactly once per alarm.

A telemetry message is a table per frame kind, `{"columns": [...], "rows":
[[...], ...]}`, with the wire's integer units: building a dict per frame cost
more than storing the frame. `telemetry_items` turns it back into dicts for
consumers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from shared.protocols.xsole import Activity, Alarm, AlarmKind, CommandResult, Heartbeat, Position
from shared.protocols.xsole.validation import alarm_fix
from shared.store.port import FrameRecord

TOPIC_TELEMETRY = "telemetry"
TOPIC_ALARM = "alarm"

_HEAD = ("tenant_id", "device_id", "imei")
COLUMNS: dict[str, tuple[str, ...]] = {
    "positions": _HEAD + Position._fields,
    "heartbeats": _HEAD + Heartbeat._fields,
    "activities": _HEAD + Activity._fields,
    "command_results": _HEAD + CommandResult._fields,
}
_KIND_OF = {Position: "positions", Heartbeat: "heartbeats", Activity: "activities", CommandResult: "command_results"}


def telemetry_message(records: Iterable[FrameRecord]) -> bytes | None:
    """One message for a commit's non-alarm frames, or None when there are none."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for record in records:
        kind = _KIND_OF.get(type(record.event))
        if kind is not None:
            rows = tables.get(kind)
            if rows is None:
                rows = tables[kind] = []
            rows.append((record.tenant_id, record.device_id, record.imei, *record.event))
    if not tables:
        return None
    return orjson.dumps({kind: {"columns": COLUMNS[kind], "rows": rows} for kind, rows in tables.items()})


def telemetry_items(payload: bytes, kind: str) -> Iterator[dict[str, Any]]:
    """The frames of one kind in a telemetry message, as dicts keyed by column."""
    table = orjson.loads(payload).get(kind)
    if table is None:
        return
    columns = table["columns"]
    for row in table["rows"]:
        yield dict(zip(columns, row))


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

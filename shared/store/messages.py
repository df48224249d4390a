"""The outbox messages a commit produces, identical for every store adapter.

Topics: `telemetry` carries one commit's positions, heartbeats, activity and
command results (many frames per message keeps the bus cheap); `alarm` carries
one newly stored ALARM, exactly once per alarm.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from shared.protocols.xsole import Activity, Alarm, AlarmKind, CommandResult, Heartbeat, Position
from shared.protocols.xsole.validation import alarm_fix
from shared.store.port import FrameRecord

TOPIC_TELEMETRY = "telemetry"
TOPIC_ALARM = "alarm"


def telemetry_message(records: Iterable[FrameRecord]) -> bytes | None:
    """One message for a commit's non-alarm frames, or None when there are none."""
    positions, heartbeats, activities, results = [], [], [], []
    for record in records:
        event = record.event
        head = {"tenant_id": record.tenant_id, "device_id": record.device_id, "imei": record.imei}
        if isinstance(event, Position):
            positions.append(head | {
                "ts": event.ts, "lat": event.lat_e7 / 1e7, "lon": event.lon_e7 / 1e7, "alt": event.alt_m,
                "speed": event.speed_cms / 100, "course": event.course_ddeg / 10, "sats": event.sats,
                "hdop": event.hdop_d / 10, "battery": event.battery, "fix_valid": event.fix_valid,
                "buffered": event.buffered,
            })
        elif isinstance(event, Heartbeat):
            heartbeats.append(head | {"ts": event.ts, "battery": event.battery, "rssi": event.rssi})
        elif isinstance(event, Activity):
            activities.append(head | {
                "ts": event.ts, "steps": event.steps, "state": event.state, "cadence": event.cadence,
                "battery": event.battery, "buffered": event.buffered,
            })
        elif isinstance(event, CommandResult):
            results.append(head | {"cmd_seq": event.cmd_seq, "status": event.status})
    if not (positions or heartbeats or activities or results):
        return None
    return orjson.dumps({
        "positions": positions, "heartbeats": heartbeats, "activities": activities, "command_results": results,
    })


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


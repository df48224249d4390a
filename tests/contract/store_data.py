"""What the store contract suites build their cases from: a device, its frames, a raised alert.

Only port methods are used (and tests/helpers/stored.py, which commits frames
as the listener does): what one adapter passes, any other must pass too.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from shared.bus.topics import TOPIC_ALARM
from shared.protocols.xsole import Alarm, AlarmKind, Position
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.store import Device, FrameRecord, Store, hash_device_token
from shared.store.alerts import Alert
from tests.helpers.stored import commit_frames

# Yesterday, midnight UTC: alarms must read as recent, or the store dates their alerts by receive time.
TS = int(time.time()) // 86400 * 86400 - 86400
IMEI = "356307042441013"
OTHER_IMEI = "356307042441021"
LAT, LON = 436163000, 70553000


async def add_device(store: Store, imei: str = IMEI, *, tenant: str = "acme", name: str = "Alice") -> Device:
    tenant_id = await store.ensure_tenant(tenant)
    return await store.add_device(
        tenant_id=tenant_id, imei=imei, name=name, token_hash=hash_device_token(imei.encode())
    )


def frame(device: Device, event: Any, received_at: float | None = None) -> FrameRecord:
    return FrameRecord(
        device.id, device.tenant_id, device.imei, event, time.time() if received_at is None else received_at
    )


def position(seq: int, ts: int, *, lat: int = LAT, battery: int = 80, flags: int = FLAG_FIX_VALID) -> Position:
    return Position(seq, ts, lat, LON, 12, 140, 900, 9, 11, battery, flags)


def sos(seq: int, ts: int, *, kind: int = AlarmKind.SOS, lat: int = LAT, lon: int = LON) -> Alarm:
    return Alarm(seq, ts, kind, lat, lon, 55, FLAG_FIX_VALID)


async def outbox(store: Store, topic: str | None = None) -> list[dict[str, Any]]:
    return [orjson.loads(e.payload) for e in await store.outbox_pending(1000) if topic is None or e.topic == topic]


async def raised_alert(store: Store, device: Device, seq: int = 1, *, kind: int = AlarmKind.SOS) -> Alert:
    """The alert of a newly committed ALARM, raised from its outbox message as the alert engine does."""
    before = {m["alarm_id"] for m in await outbox(store, TOPIC_ALARM)}
    await commit_frames(store, [frame(device, sos(seq, TS + seq, kind=kind))])
    [message] = [m for m in await outbox(store, TOPIC_ALARM) if m["alarm_id"] not in before]
    alert, created = await store.raise_alert_from_alarm(message)
    assert created
    return alert

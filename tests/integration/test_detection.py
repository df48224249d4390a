"""Server-detected alerts end to end in one process: frames committed by the store,
relayed on the in-process bus, detected, raised once, told to contacts, cleared.

Receive times are chosen by the test (frames carry them), and the offline
check is called with a chosen clock, so nothing here waits for real time.
"""

from __future__ import annotations

import time

from shared.protocols.xsole import Position
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.store import FrameRecord
from tests.helpers.alerting import eventually
from tests.helpers.stored import commit_frames

OFFLINE_AFTER = 600.0
LAT, LON = 436163000, 70553000


async def _positions(app, device, received: list[float], *, battery: int = 80, lat: int = LAT) -> None:  # type: ignore[no-untyped-def]
    """One commit per frame, as a device sending every few seconds gets."""
    for at in received:
        app.seq += 1
        event = Position(app.seq, int(at), lat, LON, 12, 140, 900, 9, 11, battery, FLAG_FIX_VALID)
        await commit_frames(app.store, [FrameRecord(device.id, device.tenant_id, device.imei, event, at)])
        app.relay.notify()
        await app.settle()


async def _alerts_of(app, kind: str) -> list:  # type: ignore[no-untyped-def]
    return [a for a in await app.alerts() if a.kind == kind]


async def test_a_silent_device_raises_one_offline_alert_and_its_return_resolves_it(smtp, start_alerting):
    app = await start_alerting(smtp, offline_after=OFFLINE_AFTER)
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test", kinds=("offline",))
    now = time.time()
    await _positions(app, device, [now - 700, now - 650])  # last heard of 650 s ago

    detection = app.service.detection
    assert await detection.check_offline(now) == 1
    assert await detection.check_offline(now + 60) == 0  # still silent: nothing new
    [alert] = await _alerts_of(app, "offline")
    assert alert.status == "open" and alert.lat == 43.6163
    await eventually(lambda: len(smtp.messages) == 1)
    assert "OFFLINE" in smtp.messages[0]["Subject"]

    # Back for over a minute without a long gap: resolved by solewatch.
    await _positions(app, device, [now - 70, now - 40, now - 5])
    [resolved] = await _alerts_of(app, "offline")
    assert (resolved.status, resolved.resolved_by, resolved.resolution_note) == (
        "resolved",
        "solewatch",
        "device back online",
    )


async def test_a_brief_return_does_not_flap_the_offline_alert(smtp, start_alerting):
    app = await start_alerting(smtp, offline_after=OFFLINE_AFTER)
    device = await app.device()
    now = time.time()
    await _positions(app, device, [now - 700])
    assert await app.service.detection.check_offline(now) == 1
    await _positions(app, device, [now - 2])  # one frame, then silence again
    assert await app.service.detection.check_offline(now + OFFLINE_AFTER + 1) == 0
    [alert] = await _alerts_of(app, "offline")
    assert alert.status == "open"  # one alert for the whole episode, not three


async def test_low_battery_once_per_discharge(smtp, start_alerting):
    app = await start_alerting(smtp)
    device = await app.device()
    now = time.time()
    await _positions(app, device, [now - 30, now - 20], battery=12)
    await _positions(app, device, [now - 10], battery=16)  # noise just above the threshold
    await _positions(app, device, [now - 5], battery=11)
    [alert] = await _alerts_of(app, "low_battery")
    assert alert.status == "open" and alert.battery == 12
    await _positions(app, device, [now - 1], battery=90)  # charged
    [charged] = await _alerts_of(app, "low_battery")
    assert charged.status == "resolved" and charged.resolution_note == "battery charged"


async def test_leaving_a_geofence_raises_geofence_exit(smtp, start_alerting):
    app = await start_alerting(smtp)
    device = await app.device()
    await app.store.add_geofence(
        tenant_id=device.tenant_id,
        name="Depot",
        devices=(),
        alert_on=("exit",),
        shape={"type": "Circle", "center": [LON / 1e7, LAT / 1e7], "radius_m": 200},
    )
    now = time.time()
    await _positions(app, device, [now - 60, now - 50])  # inside, at the centre
    await _positions(app, device, [now - 20, now - 10], lat=LAT + 50_000)  # ~550 m north
    [alert] = await _alerts_of(app, "geofence_exit")
    assert alert.status == "open" and alert.lat == (LAT + 50_000) / 1e7
    timeline = await app.actions(alert)
    assert timeline[0][0] == "raised" and timeline[0][1]["geofence"] == "Depot"


async def test_detectors_judge_each_device_by_its_newest_frame_of_a_commit(smtp, start_alerting):
    app = await start_alerting(smtp)
    device = await app.device()
    now = time.time()
    burst = [
        Position(n, int(now) - 10 + n, LAT, LON, 12, 140, 900, 9, 11, battery, FLAG_FIX_VALID)
        for n, battery in ((1, 9), (2, 8), (3, 60))
    ]  # low, then charged, all in one commit
    await commit_frames(app.store, [FrameRecord(device.id, device.tenant_id, device.imei, p, now) for p in burst])
    app.relay.notify()
    await app.settle()
    assert await _alerts_of(app, "low_battery") == []


async def test_buffered_frames_from_long_ago_raise_nothing(smtp, start_alerting):
    app = await start_alerting(smtp)
    device = await app.device()
    now = time.time()
    app.seq += 1
    stale = Position(app.seq, int(now - 3 * 3600), LAT, LON, 12, 140, 900, 9, 11, 5, FLAG_FIX_VALID | 0x02)
    await commit_frames(app.store, [FrameRecord(device.id, device.tenant_id, device.imei, stale, now)])
    app.relay.notify()
    await app.settle()
    assert await _alerts_of(app, "low_battery") == []


async def test_a_devices_own_offline_delay_applies(smtp, start_alerting):
    from shared.store.device_settings import DeviceSettings

    app = await start_alerting(smtp, offline_after=OFFLINE_AFTER)
    device = await app.device()
    await app.store.set_device_settings(device.id, DeviceSettings(offline_after=120.0))
    now = time.time()
    await _positions(app, device, [now - 130])
    assert await app.service.detection.check_offline(now) == 1  # 130 s > its 120 s, though < the 600 s default
    [alert] = await _alerts_of(app, "offline")
    assert alert.status == "open"


async def test_frames_arriving_together_are_judged_by_the_newest(smtp, start_alerting):
    # Two commits within the coalescing delay: the charged battery of the second decides.
    app = await start_alerting(smtp)
    device = await app.device()
    now = time.time()
    for seq, battery in ((1, 9), (2, 60)):
        event = Position(seq, int(now) - 10 + seq, LAT, LON, 12, 140, 900, 9, 11, battery, FLAG_FIX_VALID)
        await commit_frames(app.store, [FrameRecord(device.id, device.tenant_id, device.imei, event, now)])
    app.relay.notify()
    await app.settle()
    assert await _alerts_of(app, "low_battery") == []

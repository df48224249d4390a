"""Server-side danger detection (services/notifications/detectors): synthetic frame streams
through each rule, as the alert engine would feed them, and what an operator would see:
how many alerts are raised and cleared, when, and where."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.notifications.detectors import (
    Detection,
    GeofenceDetector,
    LowBatteryDetector,
    NoMotionDetector,
    OfflineDetector,
    ShiftWindow,
    alarm_frame,
    telemetry_frames,
)
from services.notifications.detectors.geometry import haversine_m, signed_distance_m
from shared.protocols.xsole import Activity, Alarm, AlarmKind, Heartbeat, Position
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID, ActivityState
from shared.store import FrameRecord
from shared.store.batch import DeviceAlarm, DeviceRef, IngestBatch
from shared.store.geofences import Geofence
from shared.store.messages import COLUMNS, alarm_message, telemetry_message

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

T0 = 1767225600  # 2026-01-01T00:00:00Z
DEVICE_ID, TENANT_ID, IMEI = 7, 3, "356307042441013"
SITE = (43.6163, 7.0553)  # lat, lon
STILL, LYING, WALKING, OFF_FOOT = (
    ActivityState.STILL,
    ActivityState.LYING,
    ActivityState.WALKING,
    ActivityState.OFF_FOOT,
)

_seqs = itertools.count(1)


# -- frames as the bus delivers them ------------------------------------------------------------


def _telemetry(kind: str, event: Any, received_at: float | None) -> dict[str, Any]:
    """A frame exactly as telemetry_items yields it, tagged with its kind."""
    item = dict(zip(COLUMNS[kind], (DEVICE_ID, *event, event.ts if received_at is None else received_at), strict=True))
    item.update(tenant_id=TENANT_ID, imei=IMEI, frame=kind)
    return item


def position(
    ts: int,
    lat: float = SITE[0],
    lon: float = SITE[1],
    *,
    battery: int = 80,
    buffered: bool = False,
    fix_valid: bool = True,
    hdop_d: int = 9,
    received_at: float | None = None,
) -> dict[str, Any]:
    flags = (FLAG_FIX_VALID if fix_valid else 0) | (FLAG_BUFFERED if buffered else 0)
    event = Position(
        next(_seqs) % 65536, ts, round(lat * 1e7), round(lon * 1e7), 12, 140, 900, 9, hdop_d, battery, flags
    )
    return _telemetry("positions", event, received_at)


def heartbeat(ts: int, battery: int, *, received_at: float | None = None) -> dict[str, Any]:
    return _telemetry("heartbeats", Heartbeat(next(_seqs) % 65536, ts, battery, -70), received_at)


def activity(
    ts: int, state: int, *, battery: int = 80, buffered: bool = False, received_at: float | None = None
) -> dict[str, Any]:
    event = Activity(
        next(_seqs) % 65536,
        ts,
        0 if state in (STILL, LYING) else 40,
        state,
        0,
        battery,
        FLAG_BUFFERED if buffered else 0,
    )
    return _telemetry("activities", event, received_at)


def alarm(
    ts: int, kind: AlarmKind, *, battery: int = 60, buffered: bool = False, received_at: float | None = None
) -> dict[str, Any]:
    """An ALARM as the `alarm` bus message carries it (shared.store.messages.alarm_message)."""
    event = Alarm(
        next(_seqs) % 65536,
        ts,
        kind,
        round(SITE[0] * 1e7),
        round(SITE[1] * 1e7),
        battery,
        FLAG_FIX_VALID | (FLAG_BUFFERED if buffered else 0),
    )
    alarm = DeviceAlarm(DeviceRef(DEVICE_ID, TENANT_ID, IMEI), event, ts if received_at is None else received_at)
    return alarm_frame(alarm_message(alarm, next(_seqs), ts))


def run(
    detector: Any, frames: Iterable[dict[str, Any]], state: bytes | None = None, **kwargs: Any
) -> tuple[bytes | None, list[Detection]]:
    """Feed frames one by one, at the time each was received."""
    detections: list[Detection] = []
    for frame in frames:
        state, found = detector.observe(state, frame, now=frame["received_at"], **kwargs)
        detections += found
    return state, detections


def actions(detections: Sequence[Detection]) -> list[tuple[str, str]]:
    return [(d.kind, d.action) for d in detections]


def moved(lat: float, lon: float, *, north_m: float = 0.0, east_m: float = 0.0) -> tuple[float, float]:
    """The point that many metres north and east (flat Earth: fine over a few km)."""
    m_per_deg = math.pi / 180 * 6_371_008.8
    return lat + north_m / m_per_deg, lon + east_m / (m_per_deg * math.cos(math.radians(lat)))


# -- offline ------------------------------------------------------------------------------------


def seen(
    detector: OfflineDetector, state: bytes | None, times: Iterable[float], **kwargs: Any
) -> tuple[bytes | None, list[Detection]]:
    """Heartbeats received at these times, with the clock checked every 10 s in between."""
    detections: list[Detection] = []
    for at in times:
        state, found = detector.observe(state, heartbeat(int(at), 70, received_at=at), now=at, **kwargs)
        detections += found
    return state, detections


def silence(
    detector: OfflineDetector, state: bytes | None, start: float, seconds: float, **kwargs: Any
) -> tuple[bytes | None, list[Detection]]:
    detections: list[Detection] = []
    for at in range(int(start), int(start + seconds), 10):
        state, found = detector.check(state, now=at, **kwargs)
        detections += found
    return state, detections


def test_offline_is_raised_once_after_the_whole_silence_with_the_last_known_place() -> None:
    detector = OfflineDetector(600)
    state, _ = run(detector, [position(T0, *SITE, battery=42), heartbeat(T0 + 30, 41)])

    state, early = silence(detector, state, T0 + 30, 590)
    assert early == []
    state, detections = silence(detector, state, T0 + 620, 3600)
    assert actions(detections) == [("offline", "raise")]
    raised = detections[0]
    assert raised.ts == T0 + 30 + 600  # when the silence reached the limit, whatever the checks' rhythm
    assert (raised.device_id, raised.tenant_id, raised.imei) == (DEVICE_ID, TENANT_ID, IMEI)
    assert raised.lat == pytest.approx(SITE[0]) and raised.lon == pytest.approx(SITE[1]) and raised.battery == 41
    assert raised.detail["last_seen"] == T0 + 30


def test_offline_clears_once_the_device_is_back_for_the_confirmation_period() -> None:
    detector = OfflineDetector(600, confirm_after=60)
    state, _ = seen(detector, None, [T0])
    state, raised = silence(detector, state, T0, 1200)
    assert actions(raised) == [("offline", "raise")]

    back = T0 + 1200
    state, first_minute = seen(detector, state, [back, back + 20, back + 40])
    assert first_minute == []
    state, cleared = seen(detector, state, [back + 60, back + 80])
    assert actions(cleared) == [("offline", "clear")]
    assert cleared[0].ts == back + 60 and cleared[0].detail["back_since"] == back

    state, again = silence(detector, state, back + 80, 500)
    assert again == []  # a fresh silence must last the whole offline_after again
    _, again = silence(detector, state, back + 580, 200)
    assert actions(again) == [("offline", "raise")]


def test_a_device_flapping_on_and_off_raises_one_offline_and_clears_only_when_it_stays() -> None:
    detector = OfflineDetector(600, confirm_after=60)
    state, detections = seen(detector, None, [T0])
    at = T0
    for _ in range(5):  # away 15 minutes, back for 30 seconds, again and again
        state, found = silence(detector, state, at, 900)
        detections += found
        at += 900
        state, found = seen(detector, state, [at, at + 15, at + 30])
        detections += found
        at += 30
    assert actions(detections) == [("offline", "raise")]

    state, found = seen(detector, state, [at + 900 + step for step in range(0, 300, 30)])
    assert actions(found) == [("offline", "clear")]


def test_a_reconnection_burst_of_buffered_frames_does_not_clear_offline_by_itself() -> None:
    detector = OfflineDetector(600, confirm_after=60)
    state, _ = seen(detector, None, [T0])
    state, _ = silence(detector, state, T0, 3600)
    burst = [position(T0 + 600 + i * 60, buffered=True, received_at=T0 + 3600) for i in range(50)]
    state, detections = run(detector, burst, state)
    assert detections == []
    _, detections = seen(detector, state, [T0 + 3630, T0 + 3660])
    assert actions(detections) == [("offline", "clear")]


def test_offline_after_can_be_shorter_for_one_device() -> None:
    detector = OfflineDetector(600)
    state, _ = seen(detector, None, [T0])
    _, default = silence(detector, state, T0, 300)
    _, short = silence(detector, state, T0, 300, offline_after=120)
    assert default == [] and actions(short) == [("offline", "raise")] and short[0].ts == T0 + 120


def test_a_backlog_of_old_frames_does_not_clear_offline() -> None:
    detector = OfflineDetector(600, confirm_after=60)
    state, _ = seen(detector, None, [T0])
    state, _ = silence(detector, state, T0, 1200)
    now = T0 + 7200
    backlog = [heartbeat(T0 + 1200 + i * 20, 70, received_at=T0 + 1200 + i * 20) for i in range(10)]
    detections: list[Detection] = []
    for frame in backlog:  # received an hour and a half ago, handled only now
        state, found = detector.observe(state, frame, now=now)
        detections += found
    assert detections == []


def test_a_device_never_seen_is_not_offline() -> None:
    assert OfflineDetector(600).check(None, now=T0 + 10**6) == (None, [])


# -- low battery -----------------------------------------------------------------------------------


def test_low_battery_is_raised_once_per_discharge_despite_noise_around_the_threshold() -> None:
    detector = LowBatteryDetector(15, hysteresis=10)
    rng = random.Random(1)
    readings = [max(0, min(100, level + rng.randint(-3, 3))) for level in range(40, 5, -1) for _ in range(3)]
    frames = [heartbeat(T0 + i * 60, b) for i, b in enumerate(readings)]
    state, detections = run(detector, frames)
    assert actions(detections) == [("low_battery", "raise")]
    assert detections[0].battery is not None and detections[0].battery < 15

    # Wobbling back to 20 % is no charge: still nothing.
    _, detections = run(
        detector, [heartbeat(T0 + 10_000 + i * 60, b) for i, b in enumerate([14, 18, 22, 16, 13, 24])], state
    )
    assert detections == []


def test_low_battery_rearms_only_after_a_charge() -> None:
    detector = LowBatteryDetector(15, hysteresis=10)
    levels = [30, 20, 14, 12, 60, 100, 80, 40, 14]
    frames = [heartbeat(T0 + i * 600, b) for i, b in enumerate(levels)]
    _, detections = run(detector, frames)
    assert [(d.action, d.battery) for d in detections] == [("raise", 14), ("clear", 60), ("raise", 14)]


def test_low_battery_reads_positions_and_activities_too() -> None:
    detector = LowBatteryDetector(15)
    _, from_position = run(detector, [position(T0, battery=12)])
    _, from_activity = run(detector, [activity(T0, WALKING, battery=9)])
    assert from_position[0].lat == pytest.approx(SITE[0]) and from_position[0].battery == 12
    assert actions(from_activity) == [("low_battery", "raise")] and from_activity[0].lat is None


def test_the_devices_low_battery_alarm_counts_as_the_raise() -> None:
    detector = LowBatteryDetector(15)
    _, detections = run(
        detector, [heartbeat(T0, 40), alarm(T0 + 60, AlarmKind.LOW_BATTERY, battery=10), heartbeat(T0 + 120, 9)]
    )
    assert actions(detections) == [("low_battery", "raise")]
    assert detections[0].detail["source"] == "alarm" and detections[0].detail["alarm_id"] is not None


@PROPERTY_SETTINGS
@given(st.lists(st.integers(0, 100), max_size=80))
def test_low_battery_raises_and_clears_alternate_and_each_raise_needs_a_charge(readings: list[int]) -> None:
    detector = LowBatteryDetector(15, hysteresis=10)
    _, detections = run(detector, [heartbeat(T0 + i * 60, b) for i, b in enumerate(readings)])
    assert [d.action for d in detections] == ["raise", "clear"] * (len(detections) // 2) + ["raise"] * (
        len(detections) % 2
    )
    charges = sum(
        1 for a, b in itertools.pairwise([None, *readings]) if b is not None and b >= 25 and (a is None or a < 25)
    )
    assert sum(d.action == "raise" for d in detections) <= charges + 1


# -- no motion -------------------------------------------------------------------------------------


def activities(start: int, seconds: int, state: int, every: int = 30) -> list[dict[str, Any]]:
    return [activity(ts, state) for ts in range(start, start + seconds, every)]


def test_no_motion_is_raised_after_the_stillness_limit_and_cleared_by_walking() -> None:
    detector = NoMotionDetector(600)
    stream = [position(T0 - 60), *activities(T0, 1800, STILL), *activities(T0 + 1800, 120, WALKING)]
    _, detections = run(detector, stream)
    assert actions(detections) == [("no_motion", "raise"), ("no_motion", "clear")]
    raised, cleared = detections
    assert raised.ts == T0 + 600 and raised.detail["still_since"] == T0
    assert raised.lat == pytest.approx(SITE[0])
    assert cleared.ts == T0 + 1800


def test_lying_counts_as_still_and_short_stillness_raises_nothing() -> None:
    detector = NoMotionDetector(600)
    stream = [
        *activities(T0, 300, STILL),
        *activities(T0 + 300, 240, LYING),
        *activities(T0 + 540, 60, WALKING),
        *activities(T0 + 600, 540, STILL),
        *activities(T0 + 1140, 60, WALKING),
    ]
    assert run(detector, stream)[1] == []
    _, detections = run(NoMotionDetector(600), activities(T0, 700, LYING))
    assert actions(detections) == [("no_motion", "raise")]


def test_a_silence_longer_than_the_window_breaks_the_stillness() -> None:
    detector = NoMotionDetector(600)
    stream = [*activities(T0, 300, STILL), *activities(T0 + 7200, 300, STILL)]
    assert run(detector, stream)[1] == []


def test_off_foot_breaks_the_count_but_does_not_clear() -> None:
    stream = [*activities(T0, 500, STILL), activity(T0 + 500, OFF_FOOT), *activities(T0 + 530, 500, STILL)]
    assert run(NoMotionDetector(600), stream)[1] == []
    detector = NoMotionDetector(600)
    state, raised = run(detector, activities(T0, 700, STILL))
    state, after = run(detector, [*activities(T0 + 700, 120, OFF_FOOT), *activities(T0 + 820, 1200, STILL)], state)
    assert actions(raised) == [("no_motion", "raise")] and after == []


def test_no_motion_counts_only_during_the_shift() -> None:
    detector = NoMotionDetector(600, shift=ShiftWindow.of([(8, 17)]))
    night = activities(T0 + 2 * 3600, 3 * 3600, STILL)  # 02:00-05:00 UTC, off shift
    assert run(detector, night)[1] == []

    morning = activities(T0 + 6 * 3600, 3 * 3600, STILL)  # 06:00-09:00: the count starts at 08:00
    _, detections = run(detector, morning)
    assert actions(detections) == [("no_motion", "raise")] and detections[0].ts == T0 + 8 * 3600 + 600


def test_an_overnight_shift_in_the_workers_timezone() -> None:
    # 22:00-06:00 in Paris, UTC+1 in January: 21:00 UTC starts the shift.
    detector = NoMotionDetector(600, shift=ShiftWindow.of([(22, 6)], "Europe/Paris"))
    _, detections = run(detector, activities(T0 - 4 * 3600, 2 * 3600, STILL))  # 20:00-22:00 UTC, Dec 31
    assert [d.ts for d in detections] == [T0 - 3 * 3600 + 600]
    per_device = NoMotionDetector(600)  # no default shift: always on, unless the caller gives one
    _, detections = run(
        per_device, activities(T0 + 10 * 3600, 3600, STILL), shift=ShiftWindow.of([(22, 6)], "Europe/Paris")
    )
    assert detections == []


def test_an_alert_raised_in_the_shift_is_cleared_by_walking_after_it() -> None:
    detector = NoMotionDetector(600, shift=ShiftWindow.of([(8, 17)]))
    stream = [*activities(T0 + 16 * 3600, 2 * 3600, STILL), *activities(T0 + 18 * 3600, 60, WALKING)]
    _, detections = run(detector, stream)
    assert actions(detections) == [("no_motion", "raise"), ("no_motion", "clear")]


def test_the_devices_no_motion_alarm_raises_at_once_and_walking_clears_it() -> None:
    detector = NoMotionDetector(600, shift=ShiftWindow.of([(8, 17)]))
    stream = [
        activity(T0, STILL),
        alarm(T0 + 60, AlarmKind.NO_MOTION, battery=55),
        *activities(T0 + 90, 1200, STILL),
        activity(T0 + 1300, WALKING),
    ]
    _, detections = run(detector, stream)
    assert actions(detections) == [("no_motion", "raise"), ("no_motion", "clear")]
    raised = detections[0]
    assert raised.ts == T0 + 60 and raised.detail["source"] == "alarm" and raised.battery == 55
    assert raised.lat == pytest.approx(SITE[0])
    # Other alarms are the alert engine's alone.
    assert run(NoMotionDetector(600), [alarm(T0, AlarmKind.SOS), alarm(T0 + 1, AlarmKind.FALL)])[1] == []


# -- geofences -------------------------------------------------------------------------------------


def circle(
    radius_m: float = 200.0,
    *,
    alert_on: tuple[str, ...] = ("exit",),
    devices: tuple[str, ...] = (),
    geofence_id: int = 1,
    tenant_id: int = TENANT_ID,
) -> Geofence:
    shape = {"type": "Circle", "center": [SITE[1], SITE[0]], "radius_m": radius_m}
    return Geofence(geofence_id, tenant_id, "yard", shape, devices, alert_on, 0.0)


def square(half_m: float = 200.0, *, alert_on: tuple[str, ...] = ("exit",), geofence_id: int = 2) -> Geofence:
    corners = [
        moved(*SITE, north_m=n, east_m=e)
        for n, e in ((-half_m, -half_m), (-half_m, half_m), (half_m, half_m), (half_m, -half_m))
    ]
    ring = [[lon, lat] for lat, lon in [*corners, corners[0]]]
    return Geofence(geofence_id, TENANT_ID, "site", {"type": "Polygon", "coordinates": [ring]}, (), alert_on, 0.0)


def fixes(points: Iterable[tuple[float, float]], start: int = T0, every: int = 10) -> list[dict[str, Any]]:
    return [position(start + i * every, lat, lon) for i, (lat, lon) in enumerate(points)]


def radial(distances_m: Iterable[float], bearing_deg: float = 90.0) -> list[tuple[float, float]]:
    b = math.radians(bearing_deg)
    return [moved(*SITE, north_m=d * math.cos(b), east_m=d * math.sin(b)) for d in distances_m]


def test_geometry_distances_and_insideness() -> None:
    assert haversine_m(SITE[0], SITE[1], *moved(*SITE, north_m=1000)) == pytest.approx(1000, rel=1e-3)
    fence = square(200).shape
    assert signed_distance_m(fence, *SITE) == pytest.approx(-200, abs=0.5)
    assert signed_distance_m(fence, *moved(*SITE, east_m=230)) == pytest.approx(30, abs=0.5)
    assert signed_distance_m(fence, *moved(*SITE, north_m=300, east_m=300)) == pytest.approx(
        100 * math.sqrt(2), abs=0.5
    )
    with_hole = {
        "type": "Polygon",
        "coordinates": [*square(200).shape["coordinates"], *square(50).shape["coordinates"]],
    }
    assert signed_distance_m(with_hole, *SITE) == pytest.approx(50, abs=0.5)  # in the hole: outside
    assert signed_distance_m(with_hole, *moved(*SITE, north_m=100)) == pytest.approx(-50, abs=0.5)
    assert signed_distance_m({"type": "Point"}, *SITE) is None


@pytest.mark.parametrize("fence", [circle(200), square(200)], ids=["circle", "polygon"])
def test_leaving_raises_one_exit_and_coming_back_clears_it(fence: Geofence) -> None:
    detector = GeofenceDetector(margin_m=20, confirm_fixes=2)
    path = radial([*range(0, 400, 10), *range(400, 0, -10)])  # out to 400 m and back
    _, detections = run(detector, fixes(path), geofences=[fence])
    assert actions(detections) == [("geofence_exit", "raise"), ("geofence_exit", "clear")]
    exit_, back = detections
    assert exit_.detail["geofence_id"] == fence.id and exit_.detail["geofence"] == fence.name
    assert exit_.detail["distance_m"] > 20 and back.detail["distance_m"] < -20
    assert haversine_m(SITE[0], SITE[1], exit_.lat, exit_.lon) > 220  # type: ignore[arg-type]


def test_alert_on_enter_and_both() -> None:
    path = radial([*range(400, 0, -10), *range(0, 400, 10)])  # in from 400 m, then out again
    _, enter_only = run(GeofenceDetector(), fixes(path), geofences=[circle(alert_on=("enter",))])
    assert actions(enter_only) == [("geofence_enter", "raise"), ("geofence_enter", "clear")]
    _, both = run(GeofenceDetector(), fixes(path), geofences=[square(alert_on=("enter", "exit"))])
    assert actions(both) == [
        ("geofence_enter", "raise"),
        ("geofence_exit", "clear"),
        ("geofence_exit", "raise"),
        ("geofence_enter", "clear"),
    ]


def test_gps_jitter_along_the_border_does_not_flap() -> None:
    """Along the square's east edge with ±10 m noise, out for good, back along the edge, then in:
    one exit and one enter, whatever the noise."""
    rng = random.Random(7)
    fence = square(200, alert_on=("enter", "exit"))
    inside = [moved(*SITE, east_m=170)] * 3
    along = [moved(*SITE, north_m=n, east_m=200 + rng.uniform(-10, 10)) for n in range(-150, 150, 2)]
    out = radial(range(230, 330, 10))
    back = [moved(*SITE, north_m=n, east_m=200 + rng.uniform(-10, 10)) for n in range(150, -150, -2)]
    deep = radial(range(150, 0, -10))
    _, detections = run(GeofenceDetector(margin_m=20), fixes([*inside, *along, *out, *back, *deep]), geofences=[fence])
    raised = [d.kind for d in detections if d.action == "raise"]
    assert raised == ["geofence_exit", "geofence_enter"]


def test_a_small_circle_can_still_be_entered() -> None:
    # Radius 30 m with a 20 m margin: the margin shrinks to 15 m, or no fix could ever count as inside.
    _, detections = run(
        GeofenceDetector(margin_m=20),
        fixes(radial([80, 70, 60, 10, 5, 0])),
        geofences=[circle(30, alert_on=("enter",))],
    )
    assert actions(detections) == [("geofence_enter", "raise")]


def test_the_first_fix_only_places_the_device() -> None:
    _, detections = run(GeofenceDetector(), fixes(radial([500, 510, 520])), geofences=[circle(200)])
    assert detections == []


def test_geofences_of_other_devices_and_tenants_are_ignored() -> None:
    path = fixes(radial([*range(0, 400, 10)]))
    others = [circle(devices=("356307042441021",)), circle(geofence_id=5, tenant_id=TENANT_ID + 1)]
    assert run(GeofenceDetector(), path, geofences=others)[1] == []
    _, mine = run(GeofenceDetector(), path, geofences=[circle(devices=(IMEI,))])
    assert actions(mine) == [("geofence_exit", "raise")]


def test_invalid_and_imprecise_fixes_are_ignored() -> None:
    detector = GeofenceDetector()
    state, _ = run(detector, fixes(radial([0, 10])), geofences=[circle(200)])
    far = moved(*SITE, east_m=2000)
    wild = [position(T0 + 100 + i, *far, fix_valid=False) for i in range(5)]
    wild += [position(T0 + 200 + i, *far, hdop_d=120) for i in range(5)]
    assert run(detector, wild, state, geofences=[circle(200)])[1] == []


def test_a_deleted_geofence_is_forgotten() -> None:
    detector = GeofenceDetector()
    state, _ = run(detector, fixes(radial([0, 10])), geofences=[circle(200), square(200)])
    state, _ = run(detector, [position(T0 + 100)], state, geofences=[square(200)])
    # Back again: the circle is new to the device, so its first fix, far out, only places it.
    _, detections = run(
        detector, fixes(radial([600, 610, 620]), start=T0 + 200), state, geofences=[circle(200), square(200)]
    )
    assert actions(detections) == [("geofence_exit", "raise")]
    assert detections[0].detail["geofence_id"] == square(200).id


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(st.floats(-19.5, 19.5), st.floats(0, 360)), min_size=1, max_size=120))
def test_jitter_within_the_margin_never_crosses(noise: list[tuple[float, float]]) -> None:
    fence = circle(200, alert_on=("enter", "exit"))
    start = radial([100])
    border = [radial([200 + offset], bearing)[0] for offset, bearing in noise]
    _, detections = run(GeofenceDetector(margin_m=20, confirm_fixes=1), fixes([*start, *border]), geofences=[fence])
    assert detections == []


@PROPERTY_SETTINGS
@given(st.lists(st.floats(-100, 100), min_size=1, max_size=120), st.integers(1, 3))
def test_crossings_alternate_and_each_follows_enough_clear_fixes(offsets: list[float], confirm: int) -> None:
    """Any walk: exits and enters alternate, and each comes after `confirm` fixes in a row beyond the margin."""
    fence = circle(200, alert_on=("enter", "exit"))
    frames = fixes(radial([200 + offset for offset in offsets]))
    state: bytes | None = None
    crossings: list[tuple[int, str]] = []
    for index, frame in enumerate(frames):
        state, found = GeofenceDetector(margin_m=20, confirm_fixes=confirm).observe(
            state, frame, now=frame["received_at"], geofences=[fence]
        )
        crossings += [(index, d.kind) for d in found if d.action == "raise"]
    kinds = [kind for _, kind in crossings]
    assert all(a != b for a, b in itertools.pairwise(kinds))
    for index, kind in crossings:
        run_ = offsets[index - confirm + 1 : index + 1]
        assert len(run_) == confirm
        # A little slack for the flat-Earth test geometry against the detector's haversine.
        assert all(o > 19.9 for o in run_) if kind == "geofence_exit" else all(o < -19.9 for o in run_)


# -- late frames and clock skew --------------------------------------------------------------------


def test_buffered_frames_raise_nothing() -> None:
    """A device back after two hours sends what it recorded meanwhile: a long stillness, a flat
    battery, a walk out of the yard. All of it is over; none of it raises an alert."""
    now = T0 + 7200
    recorded = [
        *(activity(ts, STILL, battery=5, buffered=True, received_at=now) for ts in range(T0, T0 + 3600, 30)),
        *(
            position(T0 + 3600 + i * 10, lat, lon, battery=5, buffered=True, received_at=now)
            for i, (lat, lon) in enumerate(radial(range(0, 600, 10)))
        ),
    ]
    cases: list[tuple[Any, dict[str, Any]]] = [
        (NoMotionDetector(600), {}),
        (LowBatteryDetector(15), {}),
        (GeofenceDetector(), {"geofences": [circle(200)]}),
    ]
    for detector, kwargs in cases:
        state, _ = run(detector, [position(T0 - 60, battery=90, received_at=T0 - 60)], **kwargs)
        assert run(detector, recorded, state, **kwargs)[1] == [], detector.name
    assert run(NoMotionDetector(600), [alarm(T0, AlarmKind.NO_MOTION, buffered=True, received_at=now)])[1] == []
    assert run(LowBatteryDetector(), [alarm(T0, AlarmKind.LOW_BATTERY, buffered=True, received_at=now)])[1] == []


def test_a_short_outages_buffered_frames_raise_nothing_either() -> None:
    """Three minutes out of coverage, outside the yard and nearly flat: sent on reconnection,
    minutes late, within what a device clock may be off, yet recognised by their flag."""
    back = T0 + 240
    recorded = [
        position(T0 + i * 10, lat, lon, battery=4, buffered=True, received_at=back)
        for i, (lat, lon) in enumerate(radial(range(400, 580, 10)))
    ]
    detector = GeofenceDetector(confirm_fixes=1)
    state, _ = run(detector, [position(T0 - 10, received_at=T0 - 10)], geofences=[circle(200)])
    assert run(detector, recorded, state, geofences=[circle(200)])[1] == []
    assert run(LowBatteryDetector(), recorded)[1] == []


def test_frames_older_than_the_newest_seen_or_marked_late_raise_nothing() -> None:
    detector = GeofenceDetector(confirm_fixes=1)
    state, _ = run(detector, fixes(radial([0, 10]), start=T0 + 1000), geofences=[circle(200)])
    older = fixes(radial([500, 510, 520]), start=T0)  # ts before T0 + 1000: out of order
    assert run(detector, older, state, geofences=[circle(200)])[1] == []

    battery = LowBatteryDetector()
    state, _ = run(battery, [heartbeat(T0, 80)])
    late = heartbeat(T0 + 60, 3) | {"late": True}  # heartbeats carry no buffered flag: the caller knows
    assert run(battery, [late], state)[1] == []


def test_a_repeated_frame_counts_once() -> None:
    detector = GeofenceDetector(confirm_fixes=2)
    state, _ = run(detector, fixes(radial([0, 10])), geofences=[circle(200)])
    outside = position(T0 + 100, *radial([400])[0])
    assert run(detector, [outside, dict(outside), dict(outside)], state, geofences=[circle(200)])[1] == []


def test_a_skewed_device_clock_neither_raises_nor_clears() -> None:
    day = 86400
    now = T0 + 10 * day
    # Stillness and low battery dated far in the future, or far in the past without the buffered flag.
    for skew in (day, -day):
        still = [activity(now + skew + i * 30, STILL, battery=3, received_at=now + i * 30) for i in range(60)]
        assert run(NoMotionDetector(600), still)[1] == []
        assert run(LowBatteryDetector(), still)[1] == []
        out = [
            position(now + skew + i * 10, lat, lon, received_at=now + i * 10)
            for i, (lat, lon) in enumerate(radial(range(0, 600, 10)))
        ]
        assert run(GeofenceDetector(), out, geofences=[circle(200)])[1] == []

    # An open no-motion alert is not cleared by a walk the device dates in the past.
    detector = NoMotionDetector(600)
    state, raised = run(detector, [activity(now + i * 30, STILL, received_at=now + i * 30) for i in range(30)])
    assert actions(raised) == [("no_motion", "raise")]
    skewed_walk = [activity(now - day + i * 30, WALKING, received_at=now + 900 + i * 30) for i in range(10)]
    state, detections = run(detector, skewed_walk, state)
    assert detections == []
    # Its clock right again, the device is believed again.
    _, detections = run(detector, [activity(now + 1300, WALKING, received_at=now + 1300)], state)
    assert actions(detections) == [("no_motion", "clear")]


# -- wiring ----------------------------------------------------------------------------------------


def test_frames_from_telemetry_messages_feed_every_detector() -> None:
    """The bus's telemetry messages, commit after commit, through telemetry_frames,
    in device time order across frame kinds within a message."""
    still = [Activity(3 + i, T0 + i * 60, 0, STILL, 0, 12, 0) for i in range(15)]
    last_commit: list[Position | Heartbeat | Activity] = [
        Position(1, T0 + 890, round(SITE[0] * 1e7), round(SITE[1] * 1e7), 0, 0, 0, 9, 9, 11, FLAG_FIX_VALID),
        Heartbeat(2, T0 + 880, 12, -60),
        Activity(18, T0 + 885, 0, STILL, 0, 12, 0),
    ]
    commits = [[event] for event in still] + [last_commit]
    detectors: list[Any] = [NoMotionDetector(600), LowBatteryDetector(15), OfflineDetector(600), GeofenceDetector()]
    states: dict[str, bytes | None] = {}
    found: list[Detection] = []
    for events in commits:
        payload = telemetry_message(
            IngestBatch.from_events(FrameRecord(DEVICE_ID, TENANT_ID, IMEI, event, event.ts + 1) for event in events)
        )
        assert payload is not None
        frames = telemetry_frames(payload)
        assert [f["ts"] for f in frames] == sorted(f["ts"] for f in frames)
        for frame in frames:
            for detector in detectors:
                if frame["frame"] in detector.frames:
                    states[detector.name], detections = detector.observe(states.get(detector.name), frame, now=T0 + 900)
                    found += detections
    assert sorted(actions(found)) == [("low_battery", "raise"), ("no_motion", "raise")]
    assert all(len(state or b"") < 200 for state in states.values())  # small enough for a cache entry per device

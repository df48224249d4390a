"""The simulated worker's walk and the frames it yields, without any network."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest

from services.simulator import simulated_imeis
from services.simulator.walk import (
    METERS_PER_DEG_LAT,
    SITES,
    Gait,
    InsoleTelemetry,
    Walker,
    is_valid_imei,
    luhn_check_digit,
)
from shared.protocols.xsole import (
    Activity,
    ActivityState,
    Alarm,
    AlarmKind,
    FrameBuffer,
    Heartbeat,
    Position,
    decode,
    encode,
    validate,
)
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _telemetry(seed: int, **kwargs: Any) -> InsoleTelemetry:
    counter = itertools.count(1)
    return InsoleTelemetry(random.Random(seed), START, next_seq=lambda: next(counter) & 0xFFFF, **kwargs)


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    dy = (lat2 - lat1) * METERS_PER_DEG_LAT
    dx = (lon2 - lon1) * METERS_PER_DEG_LAT * math.cos(math.radians(lat1))
    return math.hypot(dx, dy)


@pytest.mark.parametrize("seed", range(8))
def test_walk_stays_on_site(seed: int) -> None:
    walker = Walker(random.Random(seed))
    furthest = 0.0
    for _ in range(8 * 3600):  # a shift, second by second
        walker.advance(1.0)
        furthest = max(furthest, walker.distance_from_centre_m)
    assert furthest <= walker.site.radius_m + 15
    assert walker.odometer_m > 5_000  # and it does get around


def test_walkers_start_spread_around_the_sites() -> None:
    walkers = [Walker(random.Random(seed)) for seed in range(200)]
    assert {w.site for w in walkers} == set(SITES)
    starts = {(round(w.lat, 5), round(w.lon, 5)) for w in walkers}
    assert len(starts) == 200
    for w in walkers:
        assert _metres(w.site.lat, w.site.lon, w.lat, w.lon) <= w.site.radius_m


@pytest.mark.parametrize("seed", range(5))
def test_walking_speed_is_human(seed: int) -> None:
    walker = Walker(random.Random(seed))
    gaits = {g: 0 for g in Gait}
    for _ in range(4 * 3600):
        before = walker.odometer_m
        walker.advance(1.0)
        assert walker.odometer_m - before <= 1.8 + 1e-9  # never faster than a brisk walk
        gaits[walker.gait] += 1
        if walker.gait is Gait.WALKING:
            assert 1.0 <= walker.speed <= 1.8
            assert 70 <= walker.cadence <= 180
        else:
            assert walker.speed == 0
    mean_speed = walker.odometer_m / (4 * 3600)
    assert 0.6 <= mean_speed <= 1.5  # walking most of the time, with pauses
    assert gaits[Gait.WALKING] > gaits[Gait.STILL] > 0


def test_workers_sometimes_lie_still() -> None:
    seen_lying = 0
    for seed in range(20):
        walker = Walker(random.Random(seed))
        for _ in range(2 * 3600 // 5):
            walker.advance(5.0)
            seen_lying += walker.gait is Gait.LYING
    assert seen_lying > 0


@pytest.mark.parametrize("seed", range(6))
def test_every_frame_is_valid_and_round_trips(seed: int) -> None:
    telemetry = _telemetry(seed, position_interval=5.0)
    events = telemetry.advance(START + 6 * 3600)
    events += telemetry.advance(START + 6 * 3600 + 600, buffered=True)
    assert events
    buf = FrameBuffer()
    for event in events:
        assert validate(event, START + 7 * 3600) is None, event
        frame = encode(event)
        buf.feed(frame)
        raw = buf.next_frame()
        assert decode(raw) == event  # type: ignore[arg-type]
    assert len({e.seq for e in events}) == len(events)


def test_frame_mix_and_cadence() -> None:
    telemetry = _telemetry(1, position_interval=5.0)
    hours = 2
    events = telemetry.advance(START + hours * 3600)
    positions = [e for e in events if isinstance(e, Position)]
    activities = [e for e in events if isinstance(e, Activity)]
    heartbeats = [e for e in events if isinstance(e, Heartbeat)]
    assert abs(len(positions) - hours * 3600 / 5) <= 2
    assert abs(len(activities) - hours * 3600 / 30) <= 2
    assert abs(len(heartbeats) - hours * 3600 / 60) <= 2
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    valid = [p for p in positions if p.flags & FLAG_FIX_VALID]
    assert len(valid) > 0.9 * len(positions)
    assert all(not (p.flags & FLAG_BUFFERED) for p in positions)
    assert all(0 <= p.course_ddeg <= 3599 and p.speed_cms <= 250 for p in positions)
    # Heartbeats report a battery that only drains.
    levels = [h.battery for h in heartbeats]
    assert levels[0] >= levels[-1] and levels[0] - levels[-1] <= 20


def test_reported_fixes_move_at_walking_speed() -> None:
    telemetry = _telemetry(2, position_interval=5.0)
    fixes = [e for e in telemetry.advance(START + 3 * 3600) if isinstance(e, Position) and e.flags & FLAG_FIX_VALID]
    for a, b in itertools.pairwise(fixes):
        dt = b.ts - a.ts
        if 0 < dt <= 10:
            d = _metres(a.lat_e7 / 1e7, a.lon_e7 / 1e7, b.lat_e7 / 1e7, b.lon_e7 / 1e7)
            assert d / dt < 4.0  # walking plus GPS noise, never a car
    # Over a minute the noise averages out.
    by_minute = fixes[::12]
    for a, b in itertools.pairwise(by_minute):
        d = _metres(a.lat_e7 / 1e7, a.lon_e7 / 1e7, b.lat_e7 / 1e7, b.lon_e7 / 1e7)
        assert d / (b.ts - a.ts) < 2.2


def test_steps_match_the_distance_walked() -> None:
    telemetry = _telemetry(3, position_interval=5.0)
    events = telemetry.advance(START + 3 * 3600)
    activities = [e for e in events if isinstance(e, Activity)]
    steps = sum(a.steps for a in activities)
    walker = telemetry.walker
    expected = walker.odometer_m / walker.step_length
    assert steps == pytest.approx(expected, rel=0.02, abs=200)
    for a in activities:
        assert a.steps <= 30 * 3.2  # no more than ~190 steps/min over 30 s
        if a.state == ActivityState.WALKING:
            assert 70 <= a.cadence <= 180
        else:
            assert a.cadence == 0
            assert a.state in (ActivityState.STILL, ActivityState.LYING)


def test_sos_rate_follows_the_probability() -> None:
    sos = 0
    for seed in range(20):
        telemetry = _telemetry(seed, position_interval=10.0, sos_per_minute=1 / 10)
        events = telemetry.advance(START + 3600)
        alarms = [e for e in events if isinstance(e, Alarm) and e.kind == AlarmKind.SOS]
        for alarm in alarms:
            assert alarm.flags & FLAG_FIX_VALID or (alarm.lat_e7, alarm.lon_e7) != (0, 0)
        sos += len(alarms)
    assert 60 <= sos <= 200  # expected 6 per hour per insole, 120 in all

    quiet = _telemetry(1, position_interval=10.0, sos_per_minute=0.0)
    assert not [e for e in quiet.advance(START + 3600) if isinstance(e, Alarm) and e.kind == AlarmKind.SOS]


def test_low_battery_alarm_when_crossing_15_percent() -> None:
    telemetry = _telemetry(4, position_interval=30.0, sos_per_minute=0.0)
    telemetry.battery = 15.5
    events = telemetry.advance(START + 3600)
    alarms = [e for e in events if isinstance(e, Alarm)]
    assert [a.kind for a in alarms] == [AlarmKind.LOW_BATTERY]
    assert alarms[0].battery in (14, 15, 16)
    assert validate(alarms[0], START + 3600) is None


def test_buffered_frames_carry_the_flag_and_their_own_time() -> None:
    telemetry = _telemetry(5, position_interval=2.0)
    telemetry.advance(START + 60)
    offline = telemetry.advance(START + 120, buffered=True)
    assert offline
    assert not [e for e in offline if isinstance(e, Heartbeat)]  # not worth sending late
    for event in offline:
        assert event.flags & FLAG_BUFFERED  # type: ignore[union-attr]
        assert START + 60 <= event.ts <= START + 120  # type: ignore[union-attr]


def test_same_seed_same_walk() -> None:
    a = _telemetry(42).advance(START + 600)
    b = _telemetry(42).advance(START + 600)
    c = _telemetry(43).advance(START + 600)
    assert a == b
    assert a != c


def test_imeis_are_valid_unique_and_deterministic() -> None:
    imeis = simulated_imeis(1000)
    assert len(set(imeis)) == 1000
    assert all(len(i) == 15 and i.isdigit() and is_valid_imei(i) for i in imeis)
    assert imeis == simulated_imeis(1000)
    assert simulated_imeis(10, first=995) == imeis[995:] + simulated_imeis(5, first=1000)
    assert all(i.startswith("35999900") for i in imeis)
    assert is_valid_imei("356307042441013")  # the contract's example
    assert not is_valid_imei("356307042441014")
    assert luhn_check_digit("49015420323751") == 8  # a textbook IMEI, 490154203237518
    with pytest.raises(ValueError):
        simulated_imeis(2, first=999_999)

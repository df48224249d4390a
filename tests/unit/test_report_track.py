"""Reports' figures from synthetic tracks with known answers (CONTRACT §9, shared/reports/):
a known route's distance within 1%, a standing worker's jitter under 20 m a day, trips and
stops split where the thresholds say, and a span's figures adding up across its hours."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from shared.reports.totals import Totals, totals
from shared.reports.track import Segment, Thresholds, fixes, segments, track_distance_m
from shared.store.telemetry import StoredActivity, StoredHeartbeat, StoredPosition
from tests.helpers.tracks import SITE, Receiver, moved, position, route_length_m, stand, walk

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400

# Round a few blocks: 2.5 km, seven legs, six corners.
ROUTE = [SITE]
for north, east in [(300, 0), (0, 200), (-150, 0), (0, 350), (400, 0), (0, -550), (-550, 0)]:
    ROUTE.append(moved(*ROUTE[-1], north_m=north, east_m=east))


@pytest.mark.parametrize("seed", range(5))
def test_a_walked_route_measures_within_one_percent(seed: int) -> None:
    track = walk(ROUTE, start_ts=T0, receiver=Receiver(random.Random(seed)), interval_s=5)
    assert track_distance_m(fixes(track)) == pytest.approx(route_length_m(ROUTE), rel=0.01)


@pytest.mark.parametrize("sigma_m", [3.0, 5.0, 8.0, 12.0])
@pytest.mark.parametrize("seed", range(3))
def test_a_standing_workers_jitter_adds_under_20_m_a_day(seed: int, sigma_m: float) -> None:
    receiver = Receiver(random.Random(seed), sigma_m=sigma_m, white_m=1.5, speed_sigma_ms=0.15)
    track = stand(SITE, start_ts=T0, seconds=DAY, receiver=receiver, interval_s=30)
    spread = max(abs(p.lat_e7 - track[0].lat_e7) for p in track) * 0.011  # metres per 1e-7 degree of latitude
    assert spread > 2 * sigma_m  # the jitter is there to be ignored
    assert track_distance_m(fixes(track)) < 20


def test_invalid_imprecise_and_multipath_fixes_add_nothing() -> None:
    receiver = Receiver(random.Random(1), sigma_m=2.0)
    track = stand(SITE, start_ts=T0, seconds=3600, receiver=receiver, interval_s=30)
    far = moved(*SITE, north_m=800)
    spike = position(T0 + 1805, 900, *far, speed_ms=3.0)  # one fix 800 m off, 5 s after its neighbour
    invalid = replace(spike, ts=T0 + 1815, seq=901, fix_valid=False)
    imprecise = position(T0 + 1825, 902, *far, speed_ms=3.0, hdop=9.9)
    track = sorted([*track, spike, invalid, imprecise], key=lambda p: (p.ts, p.seq))
    assert track_distance_m(fixes(track)) < 20


def test_a_receiver_without_speed_still_measures_a_walk() -> None:
    receiver = Receiver(random.Random(2), speed_sigma_ms=0.0)
    track = [replace(p, speed_cms=0) for p in walk(ROUTE, start_ts=T0, receiver=receiver, interval_s=10)]
    # Counted in chords of three radii (30 m and more) instead of fix by fix: each corner cuts a few
    # metres, and the last stretch shorter than a chord is not counted (4% short on this route).
    assert track_distance_m(fixes(track)) == pytest.approx(route_length_m(ROUTE), rel=0.05)


# -- trips and stops -------------------------------------------------------------------------------


def _day_out(seed: int = 1) -> list[StoredPosition]:
    """Stands 20 min, walks 1 km north, stands 10 min, walks 50 m east, stands 10 min, walks 500 m north,
    pauses 3 min, walks 300 m east, stands 15 min; a fix every 10 s."""
    receiver = Receiver(random.Random(seed))
    track: list[StoredPosition] = []
    here = SITE

    def now() -> int:
        return track[-1].ts + 10 if track else T0

    def stay(seconds: int) -> None:
        track.extend(stand(here, start_ts=now(), seconds=seconds, receiver=receiver, interval_s=10, seq=len(track)))

    def go(north: float = 0, east: float = 0) -> None:
        nonlocal here
        there = moved(*here, north_m=north, east_m=east)
        track.extend(walk([here, there], start_ts=now(), receiver=receiver, interval_s=10, seq=len(track)))
        here = there

    stay(1200), go(north=1000), stay(600), go(east=50), stay(600), go(north=500), stay(180), go(east=300), stay(900)
    return track


def _shape(found: list[Segment]) -> list[tuple[str, int]]:
    return [(s.type, round(s.distance_m, -1 if s.type == "trip" else 0)) for s in found]


def test_trips_and_stops_split_where_the_default_thresholds_say() -> None:
    found = list(segments(fixes(_day_out())))
    # The 50 m move is too short for a trip (100 m): its stops make one; the 3 min pause is no stop (5 min).
    assert [s.type for s in found] == ["stop", "trip", "stop", "trip", "stop"]
    assert found[1].distance_m == pytest.approx(1000, rel=0.02)
    assert found[3].distance_m == pytest.approx(800, rel=0.02)
    assert found[2].duration_s == pytest.approx(600 + 50 / 1.4 + 600, abs=30)
    assert found[0].start.ts == T0 and found[-1].end.ts == _day_out()[-1].ts
    for before, after in itertools.pairwise(found):
        assert before.end == after.start  # each segment begins at the fix the one before ends at


def test_thresholds_given_per_request_move_the_splits() -> None:
    found = list(segments(fixes(_day_out()), Thresholds(min_stop_s=120, min_trip_m=30)))
    # Now the 3 min pause is a stop, and the 50 m move a trip.
    assert [s.type for s in found] == ["stop", "trip", "stop", "trip", "stop", "trip", "stop", "trip", "stop"]
    assert [s.distance_m for s in found if s.type == "trip"] == pytest.approx([1000, 50, 500, 300], abs=15)


def test_a_gap_without_fixes_ends_the_trip_and_no_trip_crosses_it() -> None:
    receiver = Receiver(random.Random(3))
    first = walk([SITE, moved(*SITE, north_m=400)], start_ts=T0, receiver=receiver)
    far = moved(*SITE, north_m=5000)
    later = stand(far, start_ts=first[-1].ts + 3600, seconds=900, receiver=receiver, interval_s=10, seq=len(first))
    found = list(segments(fixes(first + later)))
    assert [s.type for s in found] == ["trip", "stop"]
    assert found[0].distance_m == pytest.approx(400, rel=0.05)  # not the 4.6 km jump across the gap
    assert found[1].start.ts == later[0].ts


# -- a span's figures ------------------------------------------------------------------------------


def _activity(ts: int, state: int, steps: int = 0, *, buffered: bool = False) -> StoredActivity:
    return StoredActivity(ts, ts, steps, state, 90, 80, buffered)


def test_online_time_activity_states_and_steps_over_a_span() -> None:
    # Live frames every 60 s for 20 min, silence 15 min (offline), 5 min more; one buffered frame in the silence.
    live = [StoredHeartbeat(T0 + i * 60, i, 80, -70) for i in range(21)]
    live += [StoredHeartbeat(T0 + 2100 + i * 60, 100 + i, 80, -70) for i in range(6)]
    acts = [_activity(T0, 2, 0), _activity(T0 + 300, 1, 400), _activity(T0 + 900, 4, 10), _activity(T0 + 1200, 2, 0)]
    acts += [_activity(T0 + 1500, 3, 50, buffered=True), _activity(T0 + 2100, 5, 30), _activity(T0 + 2400, 5, 0)]
    found = totals([], acts, live, lo=T0, hi=T0 + 3600)
    assert found.online_s == 1200 + 300  # the 15 min silence is not online, the buffered frame changes nothing
    assert (found.walking_s, found.still_s, found.lying_s) == (300 + 300, 600, 300)
    assert found.running_s == 600  # buffered, but a state all the same; its successor came `gap_s` later
    assert found.off_foot_s == 300  # the last state has no successor: not counted
    assert found.steps == 490


def test_a_spans_figures_are_the_sum_of_its_hours() -> None:
    receiver = Receiver(random.Random(4))
    track = walk(ROUTE, start_ts=T0 + 1800, receiver=receiver, interval_s=10)  # ~30 min either side of T0+3600
    acts = [_activity(ts, 2 if ts < track[-1].ts else 1, 20) for ts in range(T0 + 1800, T0 + 7200, 30)]
    beats = [StoredHeartbeat(ts, ts, 80, -70) for ts in range(T0 + 1800, T0 + 7200, 60)]
    whole = totals(track, acts, beats, lo=T0, hi=T0 + 7200)
    parts = Totals()
    for lo in (T0, T0 + 3600):
        parts.add(totals(track, acts, beats, lo=lo, hi=lo + 3600))
    assert parts.online_s == whole.online_s and parts.walking_s == whole.walking_s and parts.steps == whole.steps
    assert parts.distance_m == pytest.approx(whole.distance_m, abs=15)  # the meter starts afresh at the edge
    assert whole.distance_m == pytest.approx(route_length_m(ROUTE), rel=0.02)

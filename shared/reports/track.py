"""Distance walked and trips and stops, from a worker's GPS fixes (CONTRACT §9). Pure: no I/O, no clock.

A standing worker's fixes wander by a few metres (more indoors, near walls), and summing
the steps between them would credit a worker who never moved with kilometres a day. So
`DistanceMeter` keeps an *anchor*, the last fix it counted, and counts a new fix only once
it lies clearly outside the anchor's error circle:

- a fix counts when it is at least `radius` from the anchor, `radius` being
  `max(MIN_MOVE_M, 2 × hdop × UERE_M)` (a fix's horizontal error is roughly hdop times
  the user range error, ~5 m for a consumer receiver);
- and the receiver's own speed (Doppler, far steadier than positions at rest) says the
  worker moves (`MOVING_SPEED_MS`, at this fix and the one before), or the jump is three radii or more (a receiver that
  reports no speed: jitter that far is rare, a walk gets there within a minute);
- the distance added is the straight line anchor → fix, and the fix becomes the anchor.

Fixes are left out when invalid, with hdop above `MAX_HDOP`, or when reaching them from the
previous fix would take more than `MAX_SPEED_MS` (a multipath jump); after `OUTLIER_RUN`
such jumps in a row the worker really is elsewhere and the meter re-anchors there, adding
nothing. A fix more than `TRACK_GAP_S` after the previous one starts afresh: a receiver
that saw no sky for ten minutes says nothing about the way taken.

Trips and stops (`segments`): a *stop* is a stay of at least `min_stop_s` within
`stop_radius_m` of its first fix; what lies between two stops is a *trip*, measured by
the meter above; a trip shorter than `min_trip_m` is not one: the stops on either side of
it and the trip become one stop. Segments start and end at fixes; a trip starts at the
last fix of the stop before it and ends at the first fix of the stop after it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from shared.geo import EARTH_RADIUS_M

MIN_MOVE_M = 10.0
UERE_M = 5.0
MAX_HDOP = 5.0
MOVING_SPEED_MS = 0.5
STILL_FACTOR = 3.0  # without speed, a jump of this many radii counts
MAX_SPEED_MS = 70.0  # 250 km/h: a worker may drive between sites, never faster
OUTLIER_RUN = 3
TRACK_GAP_S = 600  # as long as the default SOLEWATCH_OFFLINE_AFTER: a gap that long is a new track

DEFAULT_MIN_STOP_S = 300
M_PER_DEG = math.pi / 180 * EARTH_RADIUS_M  # metres per degree of latitude
_new = tuple.__new__  # a NamedTuple without its Python-level __new__
DEFAULT_MIN_TRIP_M = 100.0
DEFAULT_STOP_RADIUS_M = 50.0


class Fix(NamedTuple):
    """A usable GPS fix, in degrees and metres per second (a NamedTuple: a month holds millions)."""

    ts: int
    seq: int
    lat: float
    lon: float
    speed_ms: float
    hdop: float
    east_m_per_deg: float  # metres per degree of longitude at this latitude

    @property
    def key(self) -> tuple[int, int]:
        return self.ts, self.seq


class PositionRecord(Protocol):
    """What the reports read of a stored position (StoredPosition, or the store's PositionRow)."""

    @property
    def ts(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def lat_e7(self) -> int: ...
    @property
    def lon_e7(self) -> int: ...
    @property
    def speed_cms(self) -> int: ...
    @property
    def hdop_d(self) -> int: ...
    @property
    def fix_valid(self) -> bool: ...
    @property
    def buffered(self) -> bool: ...


def fixes(positions: Iterable[PositionRecord]) -> Iterator[Fix]:
    """The valid fixes among stored positions, in the order given (oldest first)."""
    for p in positions:
        if p.fix_valid and p.hdop_d <= MAX_HDOP * 10 and (p.lat_e7 or p.lon_e7):
            lat = p.lat_e7 / 1e7
            east = M_PER_DEG * math.cos(math.radians(lat))
            yield _new(Fix, (p.ts, p.seq, lat, p.lon_e7 / 1e7, p.speed_cms / 100, p.hdop_d / 10, east))


def metres(a: Fix, b: Fix) -> float:
    """The distance between two fixes on the plane tangent at the first: within 0.01% of the
    haversine up to tens of kilometres (a fix's own error is metres), at a third of its cost,
    which a month of fixes feels."""
    east = b.lon - a.lon
    if east > 180:  # across the antimeridian
        east -= 360
    elif east < -180:
        east += 360
    return math.hypot(east * a.east_m_per_deg, (b.lat - a.lat) * M_PER_DEG)


class DistanceMeter:
    """Metres moved along a stream of fixes, oldest first (see the module docstring)."""

    __slots__ = ("_anchor", "_last", "_outliers", "metres")

    def __init__(self) -> None:
        self.metres = 0.0
        self._anchor: Fix | None = None  # the last fix counted
        self._last: Fix | None = None  # the last fix taken (not an outlier)
        self._outliers = 0

    def add(self, fix: Fix) -> float:
        """Take the next fix; the metres it adds (0 for jitter, outliers and new tracks)."""
        last, anchor = self._last, self._anchor
        if last is None or anchor is None or fix.ts - last.ts > TRACK_GAP_S:
            self._anchor = self._last = fix
            self._outliers = 0
            return 0.0
        if metres(last, fix) > MAX_SPEED_MS * max(fix.ts - last.ts, 1):
            self._outliers += 1
            if self._outliers >= OUTLIER_RUN:  # not a jump but a move: start again from there
                self._anchor = self._last = fix
                self._outliers = 0
            return 0.0
        self._outliers = 0
        self._last = fix
        moving = min(fix.speed_ms, last.speed_ms) >= MOVING_SPEED_MS  # two in a row: a lone spike is noise
        moved = metres(anchor, fix)
        radius = max(MIN_MOVE_M, 2 * fix.hdop * UERE_M)
        if moved < radius or (not moving and moved < STILL_FACTOR * radius):
            return 0.0
        self._anchor = fix
        self.metres += moved
        return moved


def track_distance_m(track: Iterable[Fix]) -> float:
    meter = DistanceMeter()
    for fix in track:
        meter.add(fix)
    return meter.metres


# -- trips and stops ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thresholds:
    min_stop_s: int = DEFAULT_MIN_STOP_S
    min_trip_m: float = DEFAULT_MIN_TRIP_M
    stop_radius_m: float = DEFAULT_STOP_RADIUS_M


@dataclass(frozen=True, slots=True)
class Segment:
    type: Literal["trip", "stop"]
    start: Fix
    end: Fix
    distance_m: float

    @property
    def duration_s(self) -> int:
        return self.end.ts - self.start.ts


@dataclass(slots=True)
class _Stay:
    """Fixes within the stop radius of the first: a stop once the worker stood still there long enough.

    The stop itself runs from the first to the last fix of the stay whose speed says still: a
    worker walking in and out of the radius is on the trip until they stop (receivers without
    speed report 0, and their stops run over the whole stay)."""

    first: Fix
    last: Fix
    still_first: tuple[Fix, float] | None = None  # the first still fix and the meter's reading there
    still_last: tuple[Fix, float] | None = None

    def take(self, fix: Fix, metres: float) -> None:
        self.last = fix
        if fix.speed_ms < MOVING_SPEED_MS:
            self.still_last = (fix, metres)
            if self.still_first is None:
                self.still_first = (fix, metres)


class Segmenter:
    """`segments` a fix at a time (`add`, then `finish`), for fixes that arrive a page at a time.
    Its state: the stay under way, the trip under way, and the last stop, held back because a
    short move after it may yet extend it."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.meter = DistanceMeter()
        self.stay: _Stay | None = None
        self.trip_start: tuple[Fix, float] | None = None  # where the trip under way began, the meter then
        self.stop: Segment | None = None
        self.previous: Fix | None = None

    def add(self, fix: Fix) -> Iterator[Segment]:
        previous, stay = self.previous, self.stay
        gap = previous is not None and fix.ts - previous.ts > TRACK_GAP_S
        self.meter.add(fix)
        self.previous = fix
        if stay is not None and self._near(stay, fix):
            stay.take(fix, self.meter.metres)  # still there, even after a gap (no sky indoors)
            return
        if stay is not None:
            yield from self._close_stay(stay)
        if gap and previous is not None:  # the way from there to here is unknown: no trip across the gap
            yield from self._end_trip(previous)
            if self.stop is not None:  # nor does a stop there join one here
                yield self.stop
                self.stop = None
        if self.trip_start is None:
            self.trip_start = (fix, self.meter.metres)
        self.stay = _Stay(fix, fix)
        self.stay.take(fix, self.meter.metres)

    def finish(self) -> Iterator[Segment]:
        if self.stay is not None:
            yield from self._close_stay(self.stay)
        if self.previous is not None:
            yield from self._end_trip(self.previous)
        if self.stop is not None:
            yield self.stop

    def _near(self, stay: _Stay, fix: Fix) -> bool:
        return metres(stay.first, fix) <= self.thresholds.stop_radius_m

    def _close_stay(self, stay: _Stay) -> Iterator[Segment]:
        """The stay ended: if the worker stood still long enough, a stop, and the move before it a
        trip if long enough."""
        self.stay = None
        if stay.still_first is None or stay.still_last is None:
            return  # walked through
        (first, metres_first), (last, metres_last) = stay.still_first, stay.still_last
        if last.ts - first.ts < self.thresholds.min_stop_s:
            return  # a pause on the way: part of the trip under way
        start, metres = self.trip_start if self.trip_start is not None else (first, metres_first)
        moved = metres_first - metres
        if start is not first and moved >= self.thresholds.min_trip_m:
            if self.stop is not None:
                yield self.stop
            yield Segment("trip", start, first, moved)
            self.stop = Segment("stop", first, last, 0.0)
        else:  # no trip before it: one stop from the last one (or from where the short move began)
            self.stop = Segment("stop", self.stop.start if self.stop is not None else start, last, 0.0)
        self.trip_start = (last, metres_last)

    def _end_trip(self, last: Fix) -> Iterator[Segment]:
        """The track breaks after `last` (a gap, or its end): the move under way ends there."""
        if self.trip_start is None or self.trip_start[0] is last:
            return
        start, metres = self.trip_start
        moved = self.meter.metres - metres  # at `last`: after a gap the meter added nothing for the fix past it
        if moved >= self.thresholds.min_trip_m:
            if self.stop is not None:
                yield self.stop
                self.stop = None
            yield Segment("trip", start, last, moved)
        elif self.stop is not None:  # a short wander after the last stop belongs to it
            self.stop = Segment("stop", self.stop.start, last, 0.0)
        self.trip_start = None


def segments(track: Iterable[Fix], thresholds: Thresholds = Thresholds()) -> Iterator[Segment]:
    """The track's trips and stops, in order (see the module docstring). Streams: it keeps the
    stay under way and the last stop only, whatever the track's length."""
    segmenter = Segmenter(thresholds)
    for fix in track:
        yield from segmenter.add(fix)
    yield from segmenter.finish()

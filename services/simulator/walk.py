"""What a simulated insole records: a lone worker's walk and the telemetry it yields.

Pure and deterministic for a given `random.Random`: no sockets, no asyncio, and
the time is always passed in (unix seconds), so tests can run hours of walk in
milliseconds and the device layer only decides when to ask.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from shared.protocols.xsole import (
    Activity,
    ActivityState,
    Alarm,
    AlarmKind,
    Heartbeat,
    Position,
)
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID

METERS_PER_DEG_LAT = 111_320.0
LOW_BATTERY_PCT = 15.0
DEFAULT_SOS_PER_MINUTE = 1 / 60  # about one SOS per insole per hour
_MAX_STEP_S = 5.0  # longest stretch simulated as a straight line
_TWO_PI = 2 * math.pi

Recorded = Heartbeat | Position | Activity | Alarm  # what an insole records by itself


@dataclass(frozen=True, slots=True)
class Site:
    """A work site: workers start near its centre and stay within its radius."""

    name: str
    lat: float
    lon: float
    alt_m: float
    radius_m: float = 350.0


SITES: tuple[Site, ...] = (
    Site("sophia-north", 43.6163, 7.0553, 120.0),
    Site("sophia-west", 43.6210, 7.0461, 150.0),
    Site("sophia-south", 43.6085, 7.0712, 95.0),
    Site("sophia-east", 43.6269, 7.0640, 170.0),
)


class Gait(enum.Enum):
    WALKING = ActivityState.WALKING
    STILL = ActivityState.STILL
    LYING = ActivityState.LYING


class Walker:
    """A random walk in local metres around a site: walking bouts, pauses, rare lying still."""

    __slots__ = (
        "_gait_left",
        "_rng",
        "gait",
        "heading",
        "m_per_deg_lon",
        "odometer_m",
        "site",
        "speed",
        "step_length",
        "x",
        "y",
    )

    def __init__(self, rng: random.Random, site: Site | None = None) -> None:
        self._rng = rng
        self.site = site or rng.choice(SITES)
        # Start spread uniformly over a disc well inside the site.
        r = self.site.radius_m * 0.6 * math.sqrt(rng.random())
        a = rng.uniform(0, _TWO_PI)
        self.x, self.y = r * math.sin(a), r * math.cos(a)  # metres east, north of the centre
        self.heading = rng.uniform(0, _TWO_PI)  # radians, 0 = north, clockwise
        self.step_length = min(0.85, max(0.6, rng.gauss(0.72, 0.05)))
        self.odometer_m = 0.0
        self.m_per_deg_lon = METERS_PER_DEG_LAT * math.cos(math.radians(self.site.lat))
        self.speed = 0.0
        self.gait = Gait.STILL
        self._gait_left = 0.0
        if rng.random() < 0.7:
            self._start_walking()
        else:
            self._start_pause()

    @property
    def lat(self) -> float:
        return self.site.lat + self.y / METERS_PER_DEG_LAT

    @property
    def lon(self) -> float:
        return self.site.lon + self.x / self.m_per_deg_lon

    @property
    def distance_from_centre_m(self) -> float:
        return math.hypot(self.x, self.y)

    @property
    def cadence(self) -> float:
        """Steps per minute right now."""
        return self.speed / self.step_length * 60 if self.gait is Gait.WALKING else 0.0

    def advance(self, dt: float) -> None:
        """Move the worker on by `dt` seconds."""
        while dt > 1e-9:
            chunk = min(dt, self._gait_left, _MAX_STEP_S)
            if self.gait is Gait.WALKING:
                self._walk(chunk)
            self._gait_left -= chunk
            dt -= chunk
            if self._gait_left <= 1e-9:
                self._next_gait()

    def _walk(self, dt: float) -> None:
        rng = self._rng
        self.heading += rng.gauss(0.0, 0.2 * math.sqrt(dt))  # ~25 degrees of wander per 5 s
        if rng.random() < 0.01 * dt:  # a corner now and then
            self.heading += rng.choice((-1.0, 1.0)) * math.pi / 2
        radius = self.site.radius_m
        dist = self.distance_from_centre_m
        if dist > 0.6 * radius:
            # Steer back towards the centre, harder the nearer the edge.
            home = math.atan2(-self.x, -self.y)
            turn = (home - self.heading + math.pi) % _TWO_PI - math.pi
            self.heading += turn * min(1.0, (dist - 0.6 * radius) / (0.4 * radius))
        self.heading %= _TWO_PI
        d = self.speed * dt
        self.x += d * math.sin(self.heading)
        self.y += d * math.cos(self.heading)
        self.odometer_m += d

    def _next_gait(self) -> None:
        if self.gait is not Gait.WALKING:
            self._start_walking()
        elif self._rng.random() < 0.03:
            self.gait, self.speed = Gait.LYING, 0.0
            self._gait_left = self._rng.uniform(60.0, 300.0)
        else:
            self._start_pause()

    def _start_walking(self) -> None:
        self.gait = Gait.WALKING
        self.speed = min(1.8, max(1.0, self._rng.gauss(1.4, 0.12)))
        self._gait_left = max(10.0, self._rng.expovariate(1 / 120))

    def _start_pause(self) -> None:
        self.gait, self.speed = Gait.STILL, 0.0
        self._gait_left = max(3.0, self._rng.expovariate(1 / 30))


class InsoleTelemetry:
    """The frames one insole records over time: POSITION at its interval, ACTIVITY and
    HEARTBEAT periodically, SOS now and then, LOW_BATTERY when crossing 15%.

    `advance(until)` returns every frame due up to `until` (unix seconds) with seqs
    from `next_seq`, each timestamped at the moment it was recorded.
    """

    def __init__(
        self,
        rng: random.Random,
        start: float,
        *,
        next_seq: Callable[[], int],
        position_interval: float = 5.0,
        activity_interval: float = 30.0,
        heartbeat_interval: float = 60.0,
        sos_per_minute: float = DEFAULT_SOS_PER_MINUTE,
        site: Site | None = None,
    ) -> None:
        if position_interval <= 0:
            raise ValueError("position_interval must be positive")
        self._rng = rng
        self._next_seq = next_seq
        self.walker = Walker(rng, site)
        self.position_interval = position_interval
        self.activity_interval = activity_interval
        self.heartbeat_interval = heartbeat_interval
        self.sos_per_minute = sos_per_minute
        self.t = start
        # Random phases, so a thousand insoles started together do not tick together.
        self._next_position = start + rng.uniform(0, min(position_interval, 1.0))
        self._next_activity = start + rng.uniform(0, activity_interval)
        self._next_heartbeat = start + rng.uniform(0, min(heartbeat_interval, 5.0))
        self.battery = rng.uniform(20.0, 100.0)
        self._drain_per_s = rng.uniform(3.0, 8.0) / 3600  # percent per second
        self._low_battery_raised = self.battery <= LOW_BATTERY_PCT
        self._steps = 0.0  # since the previous ACTIVITY
        self._alt_offset = rng.uniform(-4.0, 4.0)
        self._last_fix = (round(self.walker.lat * 1e7), round(self.walker.lon * 1e7))
        self._last_fix_valid = True

    @property
    def next_due(self) -> float:
        return min(self._next_position, self._next_activity, self._next_heartbeat)

    def advance(self, until: float, *, buffered: bool = False) -> list[Recorded]:
        """All frames due up to `until`; `buffered` marks them recorded while offline."""
        flags = FLAG_BUFFERED if buffered else 0
        out: list[Recorded] = []
        while (t := self.next_due) <= until:
            self._move_to(t, flags, out)
            if self._next_position <= t:
                out.append(self._position(t, flags))
                self._next_position += self.position_interval
            if self._next_activity <= t:
                out.append(self._activity(t, flags))
                self._next_activity += self.activity_interval
            if self._next_heartbeat <= t:
                if not buffered:  # a heartbeat says "alive now": never worth sending late
                    out.append(self._heartbeat(t))
                self._next_heartbeat += self.heartbeat_interval
        return out

    def locate_now(self, now: float, *, buffered: bool = False) -> list[Recorded]:
        """A POSITION right now (the locate-now command), plus any alarm the move raised."""
        flags = FLAG_BUFFERED if buffered else 0
        out: list[Recorded] = []
        self._move_to(max(now, self.t), flags, out)
        out.append(self._position(self.t, flags))
        return out

    def sos_now(self, now: float, *, buffered: bool = False) -> list[Recorded]:
        """The worker presses SOS right now, plus any alarm the move up to now raised."""
        flags = FLAG_BUFFERED if buffered else 0
        out: list[Recorded] = []
        self._move_to(max(now, self.t), flags, out)
        out.append(self._alarm(self.t, AlarmKind.SOS, flags))
        return out

    def set_position_interval(self, seconds: float) -> None:
        """Change the POSITION interval from the next report on."""
        if seconds <= 0:
            raise ValueError("interval must be positive")
        self._next_position = min(self._next_position, self.t + seconds)
        self.position_interval = seconds

    def _move_to(self, t: float, flags: int, out: list[Recorded]) -> None:
        dt = t - self.t
        if dt <= 0:
            return
        before = self.walker.odometer_m
        self.walker.advance(dt)
        self._steps += (self.walker.odometer_m - before) / self.walker.step_length
        self.t = t
        self.battery -= self._drain_per_s * dt
        if not self._low_battery_raised and self.battery <= LOW_BATTERY_PCT:
            self._low_battery_raised = True
            out.append(self._alarm(t, AlarmKind.LOW_BATTERY, flags))
        if self.battery <= 2.0:
            # The worker swaps in charged insoles.
            self.battery = self._rng.uniform(90.0, 100.0)
            self._low_battery_raised = False
        if self._rng.random() < -math.expm1(-self.sos_per_minute * dt / 60):
            out.append(self._alarm(t, AlarmKind.SOS, flags))

    def _battery_pct(self) -> int:
        return min(100, max(0, round(self.battery)))

    def _position(self, t: float, flags: int) -> Position:
        rng, w = self._rng, self.walker
        if rng.random() < 0.02:  # indoors or under cover: no fix, last known place
            sats, hdop_d = rng.randint(0, 3), 99
            lat_e7, lon_e7 = self._last_fix
            self._last_fix_valid = False
        else:
            sats, hdop_d = rng.randint(6, 12), rng.randint(6, 20)
            sigma = 1.5 * hdop_d / 10  # metres of GPS noise
            lat = w.lat + rng.gauss(0.0, sigma) / METERS_PER_DEG_LAT
            lon = w.lon + rng.gauss(0.0, sigma) / w.m_per_deg_lon
            lat_e7, lon_e7 = round(lat * 1e7), round(lon * 1e7)
            self._last_fix, self._last_fix_valid = (lat_e7, lon_e7), True
            flags |= FLAG_FIX_VALID
        speed_cms = max(0, round(w.speed * 100 + rng.gauss(0.0, 5.0))) if w.speed else 0
        alt = round(w.site.alt_m + self._alt_offset + rng.gauss(0.0, 1.5))
        return Position(
            seq=self._next_seq(),
            ts=int(t),
            lat_e7=lat_e7,
            lon_e7=lon_e7,
            alt_m=alt,
            speed_cms=speed_cms,
            course_ddeg=round(math.degrees(w.heading) * 10) % 3600,
            sats=sats,
            hdop_d=hdop_d,
            battery=self._battery_pct(),
            flags=flags,
        )

    def _activity(self, t: float, flags: int) -> Activity:
        steps = min(0xFFFF, int(self._steps))
        self._steps -= steps
        w = self.walker
        return Activity(
            seq=self._next_seq(),
            ts=int(t),
            steps=steps,
            state=int(w.gait.value),
            cadence=min(255, round(w.cadence)),
            battery=self._battery_pct(),
            flags=flags,
        )

    def _heartbeat(self, t: float) -> Heartbeat:
        rssi = min(-40, max(-110, round(self._rng.gauss(-72.0, 8.0))))
        return Heartbeat(seq=self._next_seq(), ts=int(t), battery=self._battery_pct(), rssi=rssi)

    def _alarm(self, t: float, kind: AlarmKind, flags: int) -> Alarm:
        lat_e7, lon_e7 = self._last_fix
        if self._last_fix_valid:
            flags |= FLAG_FIX_VALID
        return Alarm(
            seq=self._next_seq(),
            ts=int(t),
            kind=int(kind),
            lat_e7=lat_e7,
            lon_e7=lon_e7,
            battery=self._battery_pct(),
            flags=flags,
        )


def luhn_check_digit(digits: str) -> int:
    """The Luhn digit that completes `digits` (an IMEI's 15th digit for its first 14)."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        n = int(c)
        if i % 2 == 0:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return (10 - total % 10) % 10


def is_valid_imei(imei: str) -> bool:
    return len(imei) == 15 and imei.isdigit() and luhn_check_digit(imei[:14]) == int(imei[14])

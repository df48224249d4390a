"""Synthetic GPS tracks with known answers, for the reports' tests and benchmark.

The receiver's error is modelled as consumer GPS behaves: a slowly wandering offset
(first-order autoregressive, correlated over ~a minute) plus a little white noise, the
same on both axes independently; Doppler speed is the true speed plus a small error.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from shared.geo import EARTH_RADIUS_M, haversine_m
from shared.store.telemetry import StoredPosition

M_PER_DEG_LAT = math.pi / 180 * EARTH_RADIUS_M
SITE = (48.137154, 11.576124)


def moved(lat: float, lon: float, *, north_m: float = 0.0, east_m: float = 0.0) -> tuple[float, float]:
    return lat + north_m / M_PER_DEG_LAT, lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat)))


def route_length_m(route: Sequence[tuple[float, float]]) -> float:
    return sum(haversine_m(*a, *b) for a, b in itertools.pairwise(route))


@dataclass
class Receiver:
    """A GPS receiver's error: `sigma_m` of wandering offset (correlated over `tau_s`) and `white_m` of noise."""

    rng: random.Random
    sigma_m: float = 3.0
    tau_s: float = 60.0
    white_m: float = 0.5
    speed_sigma_ms: float = 0.1
    _north: float = 0.0
    _east: float = 0.0

    def observe(self, lat: float, lon: float, interval_s: float) -> tuple[float, float]:
        a = math.exp(-interval_s / self.tau_s)
        keep = math.sqrt(1 - a * a) * self.sigma_m
        self._north = a * self._north + keep * self.rng.gauss(0, 1)
        self._east = a * self._east + keep * self.rng.gauss(0, 1)
        return moved(
            lat,
            lon,
            north_m=self._north + self.rng.gauss(0, self.white_m),
            east_m=self._east + self.rng.gauss(0, self.white_m),
        )

    def hdop(self) -> float:
        """What the receiver reports of its own error: hdop x ~5 m (the range error) is the
        horizontal error, sqrt(2) x sigma per axis; a little below or above."""
        return max(0.6, math.sqrt(2) * math.hypot(self.sigma_m, self.white_m) / 5 * self.rng.uniform(0.8, 1.2))

    def speed(self, true_ms: float) -> float:
        return abs(true_ms + self.rng.gauss(0, self.speed_sigma_ms))


def position(ts: int, seq: int, lat: float, lon: float, speed_ms: float, hdop: float = 1.0) -> StoredPosition:
    return StoredPosition(
        ts=ts,
        seq=seq,
        lat_e7=round(lat * 1e7),
        lon_e7=round(lon * 1e7),
        alt_m=520,
        speed_cms=round(speed_ms * 100),
        course_ddeg=0,
        sats=9,
        hdop_d=round(hdop * 10),
        battery=80,
        fix_valid=True,
        buffered=False,
    )


def walk(
    route: Sequence[tuple[float, float]],
    *,
    start_ts: int,
    receiver: Receiver,
    speed_ms: float = 1.4,
    interval_s: int = 10,
    seq: int = 0,
) -> list[StoredPosition]:
    """Fixes every `interval_s` of a walk along `route` at `speed_ms`, from its first point to its last."""
    out: list[StoredPosition] = []
    legs = [(a, b, haversine_m(*a, *b)) for a, b in itertools.pairwise(route)]
    total = sum(length for _, _, length in legs)
    travelled, ts = 0.0, start_ts
    while True:
        at = min(travelled, total)
        done = 0.0
        for a, b, length in legs:
            if done + length >= at or (a, b, length) == legs[-1]:
                f = 0.0 if length == 0 else min(1.0, (at - done) / length)
                lat, lon = a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f
                break
            done += length
        moving = travelled < total
        lat, lon = receiver.observe(lat, lon, interval_s)
        out.append(position(ts, seq + len(out), lat, lon, receiver.speed(speed_ms if moving else 0.0), receiver.hdop()))
        if not moving:
            return out
        travelled += speed_ms * interval_s
        ts += interval_s


def stand(
    where: tuple[float, float], *, start_ts: int, seconds: int, receiver: Receiver, interval_s: int = 30, seq: int = 0
) -> list[StoredPosition]:
    """A worker standing at `where`: fixes every `interval_s` for `seconds`, the receiver's error only."""
    out = []
    for i, ts in enumerate(range(start_ts, start_ts + seconds, interval_s)):
        lat, lon = receiver.observe(*where, interval_s)
        out.append(position(ts, seq + i, lat, lon, receiver.speed(0.0), hdop=receiver.hdop()))
    return out

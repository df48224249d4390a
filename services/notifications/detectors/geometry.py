"""Distances on the Earth for geofences: no dependency, good to a metre at geofence scale.

Circles use the haversine distance to their centre. Polygons use ray casting
in longitude/latitude for inside or outside, and, for the distance to the
border, an equirectangular projection centred on the point (its error grows
with the distance, negligible within a few kilometres, which is where the
distance matters: the hysteresis margin). Polygons crossing the antimeridian
are not supported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from shared.geo import EARTH_RADIUS_M
from shared.geo import haversine_m as haversine_m  # the detectors and their tests import it from here

_M_PER_DEG = math.pi / 180 * EARTH_RADIUS_M

Ring = Sequence[Sequence[float]]  # [[lon, lat], ...], closed


def point_in_ring(lat: float, lon: float, ring: Ring) -> bool:
    """Ray casting: does a ray from the point cross the ring's edges an odd number of times?"""
    inside = False
    for (x1, y1, *_), (x2, y2, *_) in pairwise(ring):
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def point_in_polygon(lat: float, lon: float, rings: Sequence[Ring]) -> bool:
    """Inside the outer ring (the first) and in none of its holes."""
    return (
        bool(rings)
        and point_in_ring(lat, lon, rings[0])
        and not any(point_in_ring(lat, lon, hole) for hole in rings[1:])
    )


def distance_to_rings_m(lat: float, lon: float, rings: Sequence[Ring]) -> float:
    """Metres from the point to the nearest edge of any ring."""
    kx = _M_PER_DEG * math.cos(math.radians(lat))
    best = math.inf
    for ring in rings:
        previous: tuple[float, float] | None = None
        for x, y, *_ in ring:
            point = ((x - lon) * kx, (y - lat) * _M_PER_DEG)
            if previous is not None:
                best = min(best, _origin_to_segment(previous, point))
            previous = point
    return best


def _origin_to_segment(a: tuple[float, float], b: tuple[float, float]) -> float:
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, -(ax * dx + ay * dy) / length2))
    return math.hypot(ax + t * dx, ay + t * dy)


def signed_distance_m(shape: dict[str, Any], lat: float, lon: float) -> float | None:
    """Metres from the point to the shape's border: negative inside, positive outside;
    None for a shape this module does not know."""
    kind = shape.get("type")
    if kind == "Circle":
        center_lon, center_lat = shape["center"][:2]
        return haversine_m(lat, lon, center_lat, center_lon) - float(shape["radius_m"])
    if kind == "Polygon":
        rings = shape["coordinates"]
        distance = distance_to_rings_m(lat, lon, rings)
        return -distance if point_in_polygon(lat, lon, rings) else distance
    return None

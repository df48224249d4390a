"""`geofence_exit` / `geofence_enter`: a device crossing a geofence's border, without GPS jitter flapping.

Each fix is placed by its signed distance to the border (negative inside).
Hysteresis has two parts: a fix counts as outside only beyond `margin_m`
metres out, as inside only `margin_m` metres in (fixes in between, the dead
band, count as neither and break a run), and a crossing needs
`confirm_fixes` such fixes in a row. GPS noise smaller than the margin
therefore never crosses. A circle's margin is at most half its radius, so a
small circle can still be entered.

A crossing raises the kinds in the geofence's `alert_on` and clears the
opposite one (an exit clears an open `geofence_enter`, and the other way
round). The first fix that places the device only sets where it is: no
crossing was seen, so nothing is raised (a worker already inside a
forbidden zone when it was drawn raises nothing until they leave and come
back). Only valid fixes of fresh POSITION frames (`frames.is_fresh`) with an
HDOP up to `max_hdop` count.

The caller passes the tenant's geofences with each frame (fetched per tenant
and cached); those not watching the device are skipped, and the state of one
that disappeared is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from services.notifications.detectors.base import (
    Detection,
    DetectionAction,
    detection,
    dump_state,
    last_frame,
    load_state,
    remember_frame,
)
from services.notifications.detectors.frames import MAX_SKEW_S, battery_of, fix_of, frame_kind, frame_ts, is_fresh
from services.notifications.detectors.geometry import signed_distance_m
from shared.store.geofences import Geofence

# State keys: "t" newest fresh (ts, seq); "g" {geofence id: [inside (1) or outside (0), run of opposite fixes]}.
_CROSSING = {1: ("geofence_enter", "geofence_exit"), 0: ("geofence_exit", "geofence_enter")}  # side -> (raise, clear)


class GeofenceDetector:
    name: ClassVar[str] = "geofence"
    kinds: ClassVar[tuple[str, ...]] = ("geofence_enter", "geofence_exit")
    frames: ClassVar[frozenset[str]] = frozenset({"positions"})

    def __init__(
        self, *, margin_m: float = 20.0, confirm_fixes: int = 2, max_hdop: float = 5.0, max_skew: float = MAX_SKEW_S
    ):
        if margin_m < 0 or confirm_fixes < 1:
            raise ValueError("margin_m is not negative and confirm_fixes at least 1")
        self.margin_m = margin_m
        self.confirm_fixes = confirm_fixes
        self.max_hdop = max_hdop
        self.max_skew = max_skew

    def observe(
        self, state: bytes | None, frame: dict[str, Any], *, now: float, geofences: Iterable[Geofence] = ()
    ) -> tuple[bytes | None, list[Detection]]:
        """`geofences`: the device's tenant's geofences (all of them, or only the device's)."""
        if frame_kind(frame) != "positions":
            return state, []
        fix = fix_of(frame)
        if fix is None or int(frame.get("hdop_d", 0)) > self.max_hdop * 10:
            return state, []
        s = load_state(state)
        if not is_fresh(frame, last_frame(s), now=now, max_skew=self.max_skew):
            return state, []
        ts = frame_ts(frame)
        remember_frame(s, frame, ts)
        lat, lon = fix[0] / 1e7, fix[1] / 1e7
        previous: dict[str, list[int]] = s.get("g", {})
        sides: dict[str, list[int]] = {}
        detections: list[Detection] = []
        for geofence in geofences:
            if geofence.tenant_id != frame["tenant_id"] or not geofence.applies_to(frame["imei"]):
                continue
            distance = signed_distance_m(geofence.shape, lat, lon)
            if distance is None:
                continue
            key = str(geofence.id)
            side = self._side(geofence, distance)
            known = previous.get(key)
            if known is None:
                if side is not None:
                    sides[key] = [side, 0]
                continue
            current, run = known
            if side is None or side == current:
                sides[key] = [current, 0]
            elif run + 1 < self.confirm_fixes:
                sides[key] = [current, run + 1]
            else:
                sides[key] = [side, 0]
                detections.extend(self._crossed(geofence, side, frame, ts, fix, distance))
        s["g"] = sides
        return dump_state(s), detections

    def _side(self, geofence: Geofence, distance: float) -> int | None:
        """1 clearly inside, 0 clearly outside, None within the margin of the border."""
        margin = self.margin_m
        if geofence.shape.get("type") == "Circle":
            margin = min(margin, float(geofence.shape["radius_m"]) / 2)
        if distance > margin:
            return 0
        if distance < -margin:
            return 1
        return None

    @staticmethod
    def _crossed(
        geofence: Geofence, side: int, frame: dict[str, Any], ts: int, fix: tuple[int, int], distance: float
    ) -> list[Detection]:
        raised, cleared = _CROSSING[side]
        detail = {"geofence_id": geofence.id, "geofence": geofence.name, "distance_m": round(distance, 1)}
        actions: tuple[tuple[str, DetectionAction], ...] = ((raised, "raise"), (cleared, "clear"))
        return [
            detection(kind, action, frame, ts=ts, fix=fix, battery=battery_of(frame), **detail)
            for kind, action in actions
            if kind.removeprefix("geofence_") in geofence.alert_on
        ]

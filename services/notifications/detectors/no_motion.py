"""`no_motion`: a worker who has not moved for `no_motion_after` seconds.

Raised when ACTIVITY frames report still or lying without a break for
`no_motion_after` seconds of device time, counted only inside the worker's
shift when a `ShiftWindow` is given (stillness before the shift starts counts
from its start). Continuity needs reports: a silence between two ACTIVITY
frames longer than `max_gap` (the window itself unless given) starts the
count again, since the frames missed might have shown walking. Unknown and
off-foot reports break the count too, without clearing (a kicked-off insole
is no sign of life).

Cleared by a walking or running report, at any hour: an alert raised before
the shift ended stays until the worker moves.

The device's own no-motion ALARM raises at once, at any hour. The alert
engine already made an alert of that ALARM: the Detection says so with
`detail["source"] == "alarm"` and the `alarm_id`, for the caller to link
rather than duplicate; its use here is that the rule does not raise a second
time for the same stillness, and that walking clears it.

Frames that are not fresh (see `frames.is_fresh`: buffered, late, repeated,
or from a skewed clock) change nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from services.notifications.detectors.base import (
    Detection,
    detection,
    dump_state,
    last_frame,
    load_state,
    remember_frame,
)
from services.notifications.detectors.frames import MAX_SKEW_S, battery_of, fix_of, frame_kind, frame_ts, is_fresh
from shared.protocols.xsole.constants import ActivityState
from shared.shift import ShiftWindow as ShiftWindow  # where it lived first; location visibility reads it too

_STILL = frozenset({ActivityState.STILL, ActivityState.LYING})
_MOVING = frozenset({ActivityState.WALKING, ActivityState.RUNNING})

# State keys: "t" newest fresh (ts, seq); "s" still since (device ts); "a" last ACTIVITY ts;
# "r" raised (1) or absent; "p" last fix (lat_e7, lon_e7).


class NoMotionDetector:
    name: ClassVar[str] = "no_motion"
    kinds: ClassVar[tuple[str, ...]] = ("no_motion",)
    frames: ClassVar[frozenset[str]] = frozenset({"activities", "alarms", "positions"})  # positions: for the location

    def __init__(
        self,
        no_motion_after: float = 600.0,
        *,
        shift: ShiftWindow | None = None,
        max_gap: float | None = None,
        max_skew: float = MAX_SKEW_S,
    ):
        """`shift`: the default working hours (None: always), overridden per device at each call."""
        if no_motion_after <= 0:
            raise ValueError("no_motion_after must be positive")
        self.no_motion_after = no_motion_after
        self.shift = shift
        self.max_gap = max_gap if max_gap is not None else no_motion_after
        self.max_skew = max_skew

    def observe(
        self, state: bytes | None, frame: dict[str, Any], *, now: float, shift: ShiftWindow | None = None
    ) -> tuple[bytes | None, list[Detection]]:
        """`shift`: this device's working hours, when they differ from the default."""
        s = load_state(state)
        if not is_fresh(frame, last_frame(s), now=now, max_skew=self.max_skew):
            return state, []
        ts = frame_ts(frame)
        remember_frame(s, frame, ts)
        fix = fix_of(frame)
        if fix is not None:
            s["p"] = list(fix)
        kind = frame_kind(frame)
        detections: list[Detection] = []
        if kind == "activities":
            detections = self._activity(s, frame, ts, shift or self.shift)
        elif kind == "alarms" and frame.get("kind") == "no_motion" and "r" not in s:
            s["r"] = 1
            detections = [
                detection(
                    "no_motion",
                    "raise",
                    frame,
                    ts=ts,
                    fix=s.get("p"),
                    battery=battery_of(frame),
                    source="alarm",
                    alarm_id=frame.get("alarm_id"),
                )
            ]
        return dump_state(s), detections

    def _activity(
        self, s: dict[str, Any], frame: dict[str, Any], ts: int, shift: ShiftWindow | None
    ) -> list[Detection]:
        state, previous = int(frame["state"]), s.get("a")
        s["a"] = ts
        if state in _MOVING:
            s.pop("s", None)
            if s.pop("r", None):
                return [detection("no_motion", "clear", frame, ts=ts, fix=s.get("p"), battery=battery_of(frame))]
            return []
        if state not in _STILL or (shift is not None and not shift.contains(ts)):
            s.pop("s", None)
            return []
        if "s" not in s or previous is None or ts - previous > self.max_gap:
            s["s"] = ts
        if "r" not in s and ts - s["s"] >= self.no_motion_after:
            s["r"] = 1
            return [
                detection(
                    "no_motion",
                    "raise",
                    frame,
                    ts=ts,
                    fix=s.get("p"),
                    battery=battery_of(frame),
                    source="activity",
                    still_since=s["s"],
                    still_for=ts - s["s"],
                )
            ]
        return []

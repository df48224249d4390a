"""`low_battery`: once per discharge, when the reported battery falls below `threshold` %.

Readings come from HEARTBEAT, POSITION and ACTIVITY frames. After a raise,
readings that hover around the threshold raise nothing more: the rule
re-arms, with a `clear`, only once a reading reaches `threshold + hysteresis`
(the insole was charged). The device's own low-battery ALARM raises too, if
the rule has not already (`detail["source"] == "alarm"`: the alert engine made
an alert of that ALARM already, for the caller to link rather than duplicate).

Frames that are not fresh (`frames.is_fresh`) change nothing: a buffered
reading from hours ago says nothing about the battery now.
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

# State keys: "t" newest fresh (ts, seq); "r" raised (1) or absent; "p" last fix (lat_e7, lon_e7).


class LowBatteryDetector:
    name: ClassVar[str] = "low_battery"
    kinds: ClassVar[tuple[str, ...]] = ("low_battery",)
    frames: ClassVar[frozenset[str]] = frozenset({"positions", "heartbeats", "activities", "alarms"})

    def __init__(self, threshold: int = 15, *, hysteresis: int = 10, max_skew: float = MAX_SKEW_S):
        if not 0 < threshold <= 100 or hysteresis < 0:
            raise ValueError("threshold is a percentage above 0, hysteresis is not negative")
        self.threshold = threshold
        self.hysteresis = hysteresis
        self.max_skew = max_skew

    def observe(
        self, state: bytes | None, frame: dict[str, Any], *, now: float
    ) -> tuple[bytes | None, list[Detection]]:
        s = load_state(state)
        if not is_fresh(frame, last_frame(s), now=now, max_skew=self.max_skew):
            return state, []
        ts = frame_ts(frame)
        remember_frame(s, frame, ts)
        fix, battery = fix_of(frame), battery_of(frame)
        if fix is not None:
            s["p"] = list(fix)
        detections: list[Detection] = []
        if frame_kind(frame) == "alarms":
            if frame.get("kind") == "low_battery" and "r" not in s:
                s["r"] = 1
                detections.append(
                    detection(
                        "low_battery",
                        "raise",
                        frame,
                        ts=ts,
                        fix=s.get("p"),
                        battery=battery,
                        source="alarm",
                        alarm_id=frame.get("alarm_id"),
                    )
                )
        elif battery is not None:
            if "r" not in s and battery < self.threshold:
                s["r"] = 1
                detections.append(
                    detection(
                        "low_battery",
                        "raise",
                        frame,
                        ts=ts,
                        fix=s.get("p"),
                        battery=battery,
                        source="report",
                        threshold=self.threshold,
                    )
                )
            elif "r" in s and battery >= self.threshold + self.hysteresis:
                del s["r"]
                detections.append(detection("low_battery", "clear", frame, ts=ts, fix=s.get("p"), battery=battery))
        return dump_state(s), detections

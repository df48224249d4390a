"""`offline`: a device silent for `offline_after` seconds, by the server's clock.

Raised by `check`, which the caller runs periodically for every device it
holds a state for, once the device has sent nothing for the whole
`offline_after` (its receive times, never its own clock, so skew plays no
part). Raised once: nothing more happens while the device stays away.

Cleared by `observe` when the device is back for good: frames over at least
`confirm_after` seconds with no silence longer than `confirm_gap` between
them (half of `offline_after` unless given). A device that reconnects for a
moment and drops again keeps its one open alert and raises no second one.
Time, not a frame count, is the test, because a device reconnecting sends
its buffered frames in one burst. Any frame counts as presence, buffered or
not: it was just received. A frame received longer than `offline_after` ago
(a consumer catching up on its backlog) proves nothing about now and clears
nothing.

The state remembers the device's ids (`check` has no frame) and its last
fix and battery, so that an offline alert says where the worker was last seen.
The caller must keep it for longer than `offline_after` (a state that expired
is a device never seen: no raise), and should not run `check` before its frame
consumer has caught up after a pause, or every device looks silent.
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
from services.notifications.detectors.frames import battery_of, fix_of, frame_ts, is_fresh

# State keys: device_id, tenant_id, imei; "r" newest receive time; "o" raised at (its ts), absent when
# online; "b" when the current return began; "t" newest fresh (ts, seq); "p" last fix; "y" last battery.


class OfflineDetector:
    name: ClassVar[str] = "offline"
    kinds: ClassVar[tuple[str, ...]] = ("offline",)
    frames: ClassVar[frozenset[str]] = frozenset({"positions", "heartbeats", "activities", "alarms"})

    def __init__(self, offline_after: float = 600.0, *, confirm_after: float = 60.0, confirm_gap: float | None = None):
        """`offline_after`: the default silence, overridden per device at each call.
        `confirm_after`: how long a device must be back before offline clears.
        `confirm_gap`: the longest silence that does not interrupt a return."""
        if offline_after <= 0 or confirm_after < 0:
            raise ValueError("offline_after must be positive and confirm_after not negative")
        self.offline_after = offline_after
        self.confirm_after = confirm_after
        self.confirm_gap = confirm_gap

    def observe(
        self, state: bytes | None, frame: dict[str, Any], *, now: float, offline_after: float | None = None
    ) -> tuple[bytes | None, list[Detection]]:
        """Note the frame's arrival; clear offline once the device's return is confirmed.
        `offline_after`: this device's own limit, when it has one."""
        after = offline_after or self.offline_after
        s = load_state(state)
        s["device_id"], s["tenant_id"], s["imei"] = frame["device_id"], frame["tenant_id"], frame["imei"]
        self._remember_whereabouts(s, frame, now)
        received = float(frame.get("received_at", now))
        previous = s.get("r")
        s["r"] = received if previous is None else max(previous, received)
        detections: list[Detection] = []
        if "o" in s and received >= now - after:
            gap = self.confirm_gap if self.confirm_gap is not None else after / 2
            if "b" not in s or previous is None or received - previous > gap:
                s["b"] = received  # back, or back again after another silence: start confirming
            elif received - s["b"] >= self.confirm_after:
                detections.append(
                    detection(
                        "offline",
                        "clear",
                        s,
                        ts=int(received),
                        fix=s.get("p"),
                        battery=s.get("y"),
                        offline_since=s["o"],
                        back_since=s["b"],
                    )
                )
                del s["o"], s["b"]
        return dump_state(s), detections

    def check(
        self, state: bytes | None, *, now: float, offline_after: float | None = None
    ) -> tuple[bytes | None, list[Detection]]:
        """Raise offline for a device silent for `offline_after` seconds (this device's own, when given)."""
        if not state:
            return state, []
        after = offline_after or self.offline_after
        s = load_state(state)
        if "o" in s or "r" not in s or now - s["r"] < after:
            return state, []
        s["o"] = int(s["r"] + after)
        s.pop("b", None)
        raised = detection(
            "offline",
            "raise",
            s,
            ts=s["o"],
            fix=s.get("p"),
            battery=s.get("y"),
            last_seen=s["r"],
            silent_for=round(now - s["r"], 1),
        )
        return dump_state(s), [raised]

    @staticmethod
    def _remember_whereabouts(s: dict[str, Any], frame: dict[str, Any], now: float) -> None:
        if not is_fresh(frame, last_frame(s), now=now):
            return
        remember_frame(s, frame, frame_ts(frame))
        fix, battery = fix_of(frame), battery_of(frame)
        if fix is not None:
            s["p"] = list(fix)
        if battery is not None:
            s["y"] = battery

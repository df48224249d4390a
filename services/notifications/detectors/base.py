"""What every detector shares: the Detection it returns, its interface, its state's encoding.

A detector is a pure rule over one device's frames. It keeps nothing itself:
the caller hands it the device's previous state (opaque bytes, None at first)
with each frame and stores the state it returns, under a key made of the
detector's `name` and the device id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import orjson

from services.notifications.detectors.frames import position_of

DetectionAction = Literal["raise", "clear"]


@dataclass(frozen=True, slots=True)
class Detection:
    """A condition that began (`raise`) or ended (`clear`) for one device."""

    kind: str  # an alert kind: offline, no_motion, low_battery, geofence_exit, geofence_enter
    action: DetectionAction
    device_id: int
    tenant_id: int
    imei: str
    ts: int  # when it happened, unix seconds (device time, except offline's server time)
    lat: float | None  # the device's last known fix, degrees
    lon: float | None
    battery: int | None
    detail: dict[str, Any] = field(default_factory=dict)


class Detector(Protocol):
    name: ClassVar[str]  # the state's key prefix, one per detector
    kinds: ClassVar[tuple[str, ...]]  # the alert kinds its Detections carry
    frames: ClassVar[frozenset[str]]  # the frame kinds it reads; feeding it others is harmless

    def observe(
        self, state: bytes | None, frame: dict[str, Any], *, now: float
    ) -> tuple[bytes | None, list[Detection]]:
        """The device's new state and what this frame raised or cleared."""


def load_state(state: bytes | None) -> dict[str, Any]:
    return orjson.loads(state) if state else {}


def dump_state(state: dict[str, Any]) -> bytes:
    return orjson.dumps(state)


def detection(
    kind: str,
    action: DetectionAction,
    ids: dict[str, Any],
    *,
    ts: int,
    fix: tuple[int, int] | list[int] | None,
    battery: int | None,
    **detail: Any,
) -> Detection:
    """A Detection for the device that `ids` (a frame, or an offline state's ids) names."""
    lat, lon = position_of(fix)
    return Detection(
        kind, action, int(ids["device_id"]), int(ids["tenant_id"]), str(ids["imei"]), int(ts), lat, lon, battery, detail
    )


def last_frame(state: dict[str, Any]) -> tuple[int, int] | None:
    """The (ts, seq) of the newest fresh frame a state saw, kept under "t"."""
    last = state.get("t")
    return (last[0], last[1]) if last else None


def remember_frame(state: dict[str, Any], frame: dict[str, Any], ts: int) -> None:
    state["t"] = [ts, int(frame.get("seq", -1))]

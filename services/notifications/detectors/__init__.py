"""Server-side danger detection: pure rules over one device's frames, one module per rule.

Every detector has the same shape (`base.Detector`): `name`, `kinds`,
`frames` and

    observe(state: bytes | None, frame: dict, *, now: float) -> (new state, [Detection, ...])

The caller keeps each device's state per detector (key: detector name and
device id, e.g. in the cache with a TTL of days; a few dozen bytes of JSON)
and stores the returned state whatever the Detections. Frames are the dicts
`frames.telemetry_frames(payload)` and `frames.alarm_frame(alarm)` make: the
`telemetry_items` dicts with a `"frame"` key naming their kind. A detector
ignores the kinds it does not read (its `frames`), so a caller may feed every
frame to every detector or route by `frames`.

Some detectors take more keyword arguments, all optional:
`OfflineDetector.observe/check(..., offline_after=)` for a per-device limit,
`NoMotionDetector.observe(..., shift=)` for a per-device shift window, and
`GeofenceDetector.observe(..., geofences=)` with the device's tenant's
geofences. `OfflineDetector.check(state, *, now)` runs periodically for
every device with a state: silence is noticed by the clock, not by a frame.

None of them raises from a frame that is buffered, late, repeated or sent by a
device whose clock is off (`frames.is_fresh`).
"""

from services.notifications.detectors.base import Detection, DetectionAction, Detector
from services.notifications.detectors.frames import (
    FRAME_KEY,
    FrameKind,
    alarm_frame,
    is_fresh,
    latest_telemetry_frames,
    telemetry_frames,
)
from services.notifications.detectors.geofence import GeofenceDetector
from services.notifications.detectors.low_battery import LowBatteryDetector
from services.notifications.detectors.no_motion import NoMotionDetector, ShiftWindow
from services.notifications.detectors.offline import OfflineDetector

__all__ = [
    "FRAME_KEY",
    "Detection",
    "DetectionAction",
    "Detector",
    "FrameKind",
    "GeofenceDetector",
    "LowBatteryDetector",
    "NoMotionDetector",
    "OfflineDetector",
    "ShiftWindow",
    "alarm_frame",
    "is_fresh",
    "latest_telemetry_frames",
    "telemetry_frames",
]

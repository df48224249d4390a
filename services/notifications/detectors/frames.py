"""What the detectors read from a frame dict, and how a caller makes those dicts.

A frame is a dict as `shared.store.messages.telemetry_items` yields it (the
wire's integer fields by name, plus device_id, tenant_id, imei and
received_at), or an `alarm` bus message (`alarm_message`), with one more key,
`"frame"`, naming its kind: "positions", "heartbeats", "activities" or
"alarms". `telemetry_frames` and `alarm_frame` add it. A caller may also set
`"late": True` on a frame it knows to be out of date; detectors then treat it
like a buffered frame.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Literal, NamedTuple

import orjson

from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID
from shared.store.messages import telemetry_items

FrameKind = Literal["positions", "heartbeats", "activities", "alarms"]
FRAME_KEY = "frame"
TELEMETRY_KINDS: tuple[FrameKind, ...] = ("positions", "heartbeats", "activities")

# How far a device clock may be from the server's before its frames are not believed.
MAX_SKEW_S = 300.0


def telemetry_frames(payload: bytes) -> list[dict[str, Any]]:
    """A `telemetry` message's frames for the detectors, tagged with their kind and
    in device time order (stable), so that a commit's heartbeat does not look late
    behind the same commit's newer position."""
    frames: list[dict[str, Any]] = []
    for kind in TELEMETRY_KINDS:
        for item in telemetry_items(payload, kind):
            item[FRAME_KEY] = kind
            frames.append(item)
    frames.sort(key=frame_ts)
    return frames


class LatestTable(NamedTuple):
    """A telemetry message's table of one kind, reduced to each device's newest row."""

    kind: FrameKind
    columns: tuple[str, ...]
    devices: dict[str, list[Any]]  # the message's device id (as text) -> [tenant id, IMEI]
    newest: dict[int, list[Any]]  # device id -> its newest row

    def frame(self, device_id: int) -> dict[str, Any]:
        return make_frame(self.kind, self.columns, self.newest[device_id], self.devices)


def make_frame(
    kind: FrameKind, columns: tuple[str, ...], row: list[Any], devices: dict[str, list[Any]]
) -> dict[str, Any]:
    """A frame dict from a telemetry message's row."""
    frame = dict(zip(columns, row, strict=True))
    frame["tenant_id"], frame["imei"] = devices[str(frame["device_id"])]
    frame[FRAME_KEY] = kind
    return frame


def latest_telemetry_tables(payload: bytes) -> list[LatestTable]:
    """Each device's newest frame of each kind in a telemetry message, by kind.

    A commit can carry several frames of one device (a window of frames in
    flight, a burst after a coverage gap). The detectors' conditions depend on
    the newest: its battery, its fix, its activity, when it was received; the
    older ones of the same commit would only be judged late. Rows become frame
    dicts only when judged (`make_frame`): a caller that keeps the newest
    across messages builds one dict per device and kind, not per message.
    """
    message = orjson.loads(payload)
    devices = message.get("devices", {})
    tables: list[LatestTable] = []
    for kind in TELEMETRY_KINDS:
        table = message.get(kind)
        if not table:
            continue
        columns = tuple(table["columns"])
        # Sorted by (ts, seq), each device's last row is its newest: C-level calls
        # only, since this runs over every message.
        ordered = sorted(table["rows"], key=itemgetter(columns.index("ts"), columns.index("seq")))
        newest = dict(zip(map(itemgetter(columns.index("device_id")), ordered), ordered, strict=True))
        tables.append(LatestTable(kind, columns, devices, newest))
    return tables


def latest_telemetry_frames(payload: bytes) -> list[dict[str, Any]]:
    """`latest_telemetry_tables` as frame dicts, in device time order."""
    return sorted(
        (t.frame(device_id) for t in latest_telemetry_tables(payload) for device_id in t.newest), key=frame_ts
    )


def alarm_frame(alarm: dict[str, Any] | bytes) -> dict[str, Any]:
    """An `alarm` bus message (its payload or the decoded dict) as a frame for the detectors."""
    frame = orjson.loads(alarm) if isinstance(alarm, bytes) else dict(alarm)
    frame[FRAME_KEY] = "alarms"
    return frame


def frame_kind(frame: dict[str, Any]) -> str:
    return str(frame.get(FRAME_KEY, ""))


def frame_ts(frame: dict[str, Any]) -> int:
    """The device's own time of the frame (an alarm message's `ts` may be the receive time)."""
    return int(frame.get("device_ts", frame["ts"]))


def is_buffered(frame: dict[str, Any]) -> bool:
    """Recorded while offline and sent late (flags bit 1); heartbeats carry no flags."""
    if "buffered" in frame:
        return bool(frame["buffered"])
    return bool(int(frame.get("flags", 0)) & FLAG_BUFFERED)


def fix_of(frame: dict[str, Any]) -> tuple[int, int] | None:
    """The frame's valid GPS fix as (lat_e7, lon_e7), or None."""
    if "lat_e7" in frame:
        if int(frame.get("flags", 0)) & FLAG_FIX_VALID:
            return int(frame["lat_e7"]), int(frame["lon_e7"])
        return None
    lat, lon = frame.get("lat"), frame.get("lon")  # an alarm message, in degrees
    if lat is None or lon is None:
        return None
    return round(lat * 1e7), round(lon * 1e7)


def battery_of(frame: dict[str, Any]) -> int | None:
    battery = frame.get("battery")
    if battery is None or not 0 <= int(battery) <= 100:
        return None
    return int(battery)


def is_fresh(frame: dict[str, Any], last: tuple[int, int] | None, *, now: float, max_skew: float = MAX_SKEW_S) -> bool:
    """Whether a frame may raise or clear anything.

    Not when it is late: buffered, marked late by the caller, older than the
    newest frame the detector has seen (`last`, its (ts, seq)), or that very
    frame again (a retransmission or a redelivered message). Nor when the
    device clock is more than `max_skew` seconds off the server's at reception
    (`received_at`, or `now` when absent): its time cannot be believed.
    """
    if frame.get("late") or is_buffered(frame):
        return False
    ts = frame_ts(frame)
    reference = float(frame.get("received_at", now))
    if abs(ts - reference) > max_skew:
        return False
    if last is not None:
        last_ts, last_seq = last
        if ts < last_ts or (ts == last_ts and int(frame.get("seq", -1)) == last_seq):
            return False
    return True


def position_of(fix: tuple[int, int] | list[int] | None) -> tuple[float | None, float | None]:
    """A stored (lat_e7, lon_e7) fix as degrees for a Detection."""
    if not fix:
        return None, None
    return fix[0] / 1e7, fix[1] / 1e7

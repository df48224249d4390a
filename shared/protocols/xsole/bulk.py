"""The hot path: a run of in-range telemetry frames decoded in one call.

The general path (`FrameBuffer.next_frame`, `decode`, `validate`) builds a
frame tuple, an event and a verdict per frame. At tens of thousands of frames
a second per core that bookkeeping cost more than the framing itself, so for
the common case (whole, well-formed POSITION, HEARTBEAT, ACTIVITY or
COMMAND_RESULT frames whose values are in range) this reads the header, checks
the CRC and unpacks the payload into a `TelemetryRun`: what was decoded, in
the protocol's own terms (frame types, seqs, wire units). What a store makes
of it is the store's business.

It stops at the first frame it does not take, without consuming it: anything
unusual (an ALARM, a LOGIN, a bad CRC or magic, a cut-short or oversized
frame, a value out of range) goes through the general path, which answers it
as the contract says. `tests/unit/test_xsole_bulk.py` holds the two paths to
the same results.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from shared.protocols.xsole.constants import MAGIC, VERSION, FrameType
from shared.protocols.xsole.framing import MAX_LENGTH
from shared.protocols.xsole.messages import LAYOUTS, Activity, CommandResult, Heartbeat, Position, encode
from shared.protocols.xsole.validation import CHECKS, FieldsCheck

# The frame types taken here; every other type goes through the general path.
HOT_TYPES: tuple[int, ...] = (FrameType.POSITION, FrameType.HEARTBEAT, FrameType.ACTIVITY, FrameType.COMMAND_RESULT)

_HEADER = struct.Struct(">HBBHH")  # magic, version, type, length, seq
_MAGIC = int.from_bytes(MAGIC, "big")
_HOT: dict[int, tuple[Callable[[Any, int], tuple[Any, ...]], int, FieldsCheck, bool]] = {
    frame_type: (
        LAYOUTS[frame_type][1].unpack_from,
        2 + LAYOUTS[frame_type][1].size,
        CHECKS[frame_type],
        frame_type != FrameType.COMMAND_RESULT,
    )  # whether its first field is the device's ts
    for frame_type in HOT_TYPES
}
_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__: one per run
NO_TS = (2**32, -1)  # the (first, last) device time of a run without timestamps

Fields = tuple[int, ...]  # a frame's fields in wire order, seq first: the layout of its event type
_NONE_YET: list[Fields] = []  # never appended to: a run's first frame replaces it


class TelemetryRun(NamedTuple):
    """Consecutive telemetry frames of one device, decoded.

    `fields_by_type` maps each frame type in the run to its frames' fields, in
    the order received (a `Position(*fields)` is the frame's event); `seqs` are
    every frame's seq in the order received, which is the order to ACK them.
    `first_ts`/`last_ts` are the earliest and latest device time in the run
    (`NO_TS` when no frame has one, e.g. command results alone), and `frames`
    the bytes as received, CRCs included.

    Built once and not changed afterwards: the lists belong to the run.
    """

    seqs: list[int]
    fields_by_type: dict[int, list[Fields]]
    first_ts: int
    last_ts: int
    frames: bytes


def take_telemetry(buf: bytes, pos: int, received_at: float, limit: int) -> tuple[int, TelemetryRun | None]:
    """Decode up to `limit` frames of `buf` from `pos`; return where the run
    stopped and the run (None when no frame was taken).

    `received_at` is the "now" that timestamps are judged by.
    """
    end = len(buf)
    start = pos
    unpack_header = _HEADER.unpack_from
    crc = binascii.crc_hqx
    hot = _HOT
    seqs: list[int] = []
    fields_by_type: dict[int, list[Fields]] = {}
    # Most runs hold one frame type: its list stays at hand.
    current_type, current = -1, _NONE_YET
    taken = 0
    first_ts, last_ts = NO_TS
    while taken < limit and end - pos >= 10:
        magic, version, frame_type, length, seq = unpack_header(buf, pos)
        after = pos + 8 + length
        spec = hot.get(frame_type)
        if magic != _MAGIC or version != VERSION or spec is None or after > end or length > MAX_LENGTH:
            break
        unpack, min_length, check, has_ts = spec
        # A CRC-16/CCITT-FALSE over the data followed by its CRC leaves 0.
        if length < min_length or crc(buf[pos + 2 : after], 0xFFFF):
            break
        fields = unpack(buf, pos + 8)
        if check(fields, received_at) is not None:
            break
        if frame_type != current_type:
            current_type = frame_type
            current = fields_by_type.setdefault(frame_type, [])
        current.append((seq, *fields))
        seqs.append(seq)
        if has_ts:
            ts = fields[0]
            if ts < first_ts:
                first_ts = ts
            if ts > last_ts:
                last_ts = ts
        pos = after
        taken += 1
    if pos == start:
        return pos, None
    return pos, _new_tuple(TelemetryRun, (seqs, fields_by_type, first_ts, last_ts, buf[start:pos]))


def read_run(frames: bytes) -> TelemetryRun:
    """A run's bytes, as `TelemetryRun.frames` holds them, decoded again (by a
    storage writer that got them from a bus, say). The values are not judged
    again: they were when the frames were taken. Raises ValueError unless
    `frames` is whole telemetry frames of the hot path's types, CRCs valid."""
    seqs: list[int] = []
    fields_by_type: dict[int, list[Fields]] = {}
    # Most runs hold one frame type: its list stays at hand.
    current_type, current = -1, _NONE_YET
    first_ts, last_ts = NO_TS
    pos, end = 0, len(frames)
    unpack_header, crc, hot = _HEADER.unpack_from, binascii.crc_hqx, _HOT
    while pos < end:
        if end - pos < 10:
            raise ValueError(f"{end - pos} bytes left at {pos}: not a frame")
        magic, version, frame_type, length, seq = unpack_header(frames, pos)
        after = pos + 8 + length
        spec = hot.get(frame_type)
        if magic != _MAGIC or version != VERSION or spec is None or after > end or length < spec[1]:
            raise ValueError(f"no telemetry frame at {pos}")
        if crc(frames[pos + 2 : after], 0xFFFF):
            raise ValueError(f"bad CRC at {pos}")
        fields = spec[0](frames, pos + 8)
        if frame_type != current_type:
            current_type, current = frame_type, fields_by_type.setdefault(frame_type, [])
        current.append((seq, *fields))
        seqs.append(seq)
        if spec[3]:
            ts = fields[0]
            if ts < first_ts:
                first_ts = ts
            if ts > last_ts:
                last_ts = ts
        pos = after
    if not seqs:
        raise ValueError("no frame")
    return TelemetryRun(seqs, fields_by_type, first_ts, last_ts, frames)


_TYPE_OF: dict[type, int] = {
    Position: FrameType.POSITION,
    Heartbeat: FrameType.HEARTBEAT,
    Activity: FrameType.ACTIVITY,
    CommandResult: FrameType.COMMAND_RESULT,
}


def run_of_one(event: Position | Heartbeat | Activity | CommandResult) -> TelemetryRun:
    """A frame that took the general path as a run of one, its bytes encoded
    again (the same as received, unless the frame carried fields this version
    does not know, which are left out)."""
    frame_type = _TYPE_OF[type(event)]
    ts = NO_TS if frame_type == FrameType.COMMAND_RESULT else (event[1], event[1])
    return TelemetryRun([event.seq], {frame_type: [tuple(event)]}, ts[0], ts[1], encode(event))

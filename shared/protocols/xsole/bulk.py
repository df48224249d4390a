"""The hot path: a run of in-range telemetry frames decoded in one call.

The general path (`FrameBuffer.next_frame`, `decode`, `validate`) builds a
frame tuple, an event and a verdict per frame, and its callers build a storage
row from the event. At tens of thousands of frames a second per core that
bookkeeping cost more than the framing itself, so for the common case (whole,
well-formed POSITION, HEARTBEAT, ACTIVITY or COMMAND_RESULT frames whose values
are in range) this reads the header, checks the CRC and unpacks the payload
straight into the row the store inserts.

It stops at the first frame it does not take, without consuming it: anything
unusual (an ALARM, a LOGIN, a bad CRC or magic, a cut-short or oversized
frame, a value out of range) goes through the general path, which answers it
as the contract says. `tests/unit/test_bulk.py` holds the two paths to the
same results.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Callable
from typing import Any

from shared.protocols.xsole.constants import MAGIC, VERSION, FrameType
from shared.protocols.xsole.framing import MAX_LENGTH
from shared.protocols.xsole.messages import LAYOUTS
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
NO_TS = (2**32, -1)  # the (first, last) device time of a run without timestamps


def take_telemetry(
    buf: bytes,
    pos: int,
    key: int,
    received_at: float,
    rows_by_type: dict[int, list[tuple[Any, ...]]],
    seqs: list[int],
    limit: int,
) -> tuple[int, int, int]:
    """Decode up to `limit` frames of `buf` from `pos`; return where the run
    stopped and the earliest and latest device time in it (`NO_TS` if none).

    Each frame taken appends `(key, seq, *fields, received_at)` (the layout of
    `shared.store.messages.COLUMNS`) to `rows_by_type[frame type]`, and its seq
    to `seqs`. `received_at` is also the "now" that timestamps are judged by.
    """
    end = len(buf)
    unpack_header = _HEADER.unpack_from
    crc = binascii.crc_hqx
    hot = _HOT
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
        rows_by_type[frame_type].append((key, seq, *fields, received_at))
        seqs.append(seq)
        if has_ts:
            ts = fields[0]
            if ts < first_ts:
                first_ts = ts
            if ts > last_ts:
                last_ts = ts
        pos = after
        taken += 1
    return pos, first_ts, last_ts

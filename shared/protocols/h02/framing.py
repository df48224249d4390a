"""Cutting an H02 byte stream into packets: text `*..#` and binary `$..`, with resync and limits.

H02 has no length field and no checksum. A text packet runs from `*` to the first `#`; a binary
packet has a fixed core (the marker, the device id in BCD, time, date, fix, speed, course and the
status word) followed by a model-specific tail (3 to 19 bytes in the frames Traccar's tests hold).
Nothing on the wire says how long that tail is, so it runs to the next plausible packet start or to
the end of what has arrived, at most MAX_BINARY bytes in all; a tail that arrives after its core was
taken is skipped as garbage (counted in `skipped_bytes`) and never changes what was decoded.

What stands in for a checksum is the structure: a `$` only starts a packet when the BCD digits,
the clock fields and the hemisphere flags of its core are well formed, and a `*` only when it is
followed by a two-letter maker and a comma.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from shared.protocols.tracker import TrackerProtocolError

MAX_TEXT = 1024  # the longest text packet in Traccar's tests is ~330 bytes (a V3 with 7 cells)
MAX_BINARY = 64  # the longest binary packet in Traccar's tests is 48 bytes
SHORT_ID_CORE = 29  # '$', 5 id bytes (10 digits), 3 time, 3 date, 4 lat, battery, 5 lon+flags, 3 speed+course, 4 status
LONG_ID_CORE = 32  # the same with an 8-byte id (15 digits and a pad nibble)
_TEXT_HEAD = re.compile(rb"\*[A-Za-z]{2},")
_SEPARATORS = b"\r\n"


class Packet(NamedTuple):
    binary: bool
    data: bytes  # the whole packet, marker included
    long_id: bool = False  # binary only: an 8-byte id


def _bcd_ok(data: bytes | bytearray) -> bool:
    return all((b >> 4) < 10 and (b & 0x0F) < 10 for b in data)


def _bcd(b: int) -> int:
    return (b >> 4) * 10 + (b & 0x0F)


def _clock_ok(time_bytes: bytes | bytearray, date_bytes: bytes | bytearray) -> bool:
    if not (_bcd_ok(time_bytes) and _bcd_ok(date_bytes)):
        return False
    hour, minute, second = (_bcd(b) for b in time_bytes)
    day, month, _ = (_bcd(b) for b in date_bytes)
    return hour < 24 and minute < 60 and second < 60 and 1 <= day <= 31 and 1 <= month <= 12


def binary_core(buf: bytes | bytearray, start: int) -> bool | None:
    """Whether a binary packet's core starting at `start` has an 8-byte id (True) or a 5-byte one
    (False); None when the bytes there are no binary packet. Needs LONG_ID_CORE bytes."""
    for long_id, id_size in ((False, 5), (True, 8)):
        at = start + 1 + id_size
        if not _bcd_ok(buf[start + 1 : at]) or not _clock_ok(buf[at : at + 3], buf[at + 3 : at + 6]):
            continue
        # latitude (8 digits), battery, longitude (9 digits and the flags nibble), speed (3 digits),
        # course (a hundreds nibble of 0-3 and 2 digits)
        lat, lon, motion = buf[at + 6 : at + 10], buf[at + 11 : at + 15], buf[at + 16 : at + 19]
        if not (_bcd_ok(lat) and _bcd_ok(lon) and (buf[at + 15] >> 4) < 10):
            continue
        if _bcd_ok(motion[:1]) and (motion[1] >> 4) < 10 and (motion[1] & 0x0F) < 4 and _bcd_ok(motion[2:]):
            return long_id
    return None


class Framer:
    """Finds packets in a session's buffer (the buffer is the session's; this keeps no bytes)."""

    def __init__(self) -> None:
        self.skipped_bytes = 0

    def next_packet(self, buf: bytearray) -> Packet | None:
        """The next packet, consumed from `buf`; None when more bytes are needed. Raises
        TrackerProtocolError for a text packet longer than MAX_TEXT (nothing after it can be trusted)."""
        while buf:
            head = buf[0]
            if head in _SEPARATORS:  # devices end some packets with CR LF: not garbage
                del buf[0]
                continue
            if head == 0x2A:  # '*'
                if len(buf) < 4:
                    return None
                if _TEXT_HEAD.match(buf):
                    end = buf.find(b"#", 0, MAX_TEXT)
                    cut = _TEXT_HEAD.search(buf, 1, end if end >= 0 else len(buf))
                    if cut is not None:  # a packet cut short by the next one: drop what came of it
                        self.skipped_bytes += cut.start()
                        del buf[: cut.start()]
                        continue
                    if end >= 0:
                        data = bytes(buf[: end + 1])
                        del buf[: end + 1]
                        return Packet(False, data)
                    if len(buf) >= MAX_TEXT:
                        raise TrackerProtocolError(f"a text packet longer than {MAX_TEXT} bytes")
                    return None
            elif head == 0x24:  # '$'
                if len(buf) < LONG_ID_CORE:
                    if _bcd_ok(buf[1:6]):
                        return None
                    # not an identifier: a stray '$', and a short packet after it must not wait for more bytes
                    long_id = None
                else:
                    long_id = binary_core(buf, 0)
                if long_id is not None:
                    # A binary packet cut short and followed by a text one would take the text's first
                    # bytes as its status word: a text head inside the core means it was cut.
                    core = LONG_ID_CORE if long_id else SHORT_ID_CORE
                    cut = _TEXT_HEAD.search(buf, 1, core + len(b"*HQ,") - 1)
                    if cut is not None:
                        self.skipped_bytes += cut.start()
                        del buf[: cut.start()]
                        continue
                    end = self._binary_end(buf, core)
                    data = bytes(buf[:end])
                    del buf[:end]
                    return Packet(True, data, long_id)
            self._skip(buf)
        return None

    def _binary_end(self, buf: bytearray, minimum: int) -> int:
        """Where a binary packet ends: at the next plausible start after its core (a short tail is
        a packet cut short: the next one matters more), else at the end of what has arrived, at
        most MAX_BINARY."""
        limit = min(len(buf), MAX_BINARY)
        for at in range(minimum, limit):
            if self._plausible_start(buf, at):
                return at
        return limit

    @staticmethod
    def _plausible_start(buf: bytearray, at: int) -> bool:
        if buf[at] == 0x2A:
            return len(buf) - at < 4 or _TEXT_HEAD.match(buf, at) is not None
        if buf[at] == 0x24:
            return len(buf) - at < LONG_ID_CORE or binary_core(buf, at) is not None
        return False

    def _skip(self, buf: bytearray) -> None:
        """Drop the byte that cannot start a packet and everything up to the next marker."""
        next_at = len(buf)
        for marker in b"*$":
            found = buf.find(bytes((marker,)), 1)
            if 0 <= found < next_at:
                next_at = found
        self.skipped_bytes += next_at
        del buf[:next_at]

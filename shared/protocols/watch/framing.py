"""Cutting a byte stream into watch packets: `[MF*ID*LEN*content]` or, on some models, `[MF*ID*INDEX*LEN*content]`.

A packet is found by its brackets, as Traccar's WatchFrameDecoder does, not by its length field: the
devices' own lengths are often off (14 of the 48 text frames in Traccar's watch decoder tests disagree with their
content), and binary content (voice, photos) is escaped so that it never holds a bracket:
`}` `[` `]` `,` `*` travel as `7d 01` .. `7d 05`. A text packet may hold brackets of its own (a WiFi
name such as `[LG_Wall-Mount A/C]e725`), so brackets nest. What the framing adds to Traccar's:

- resync: bytes before a `[` that starts a plausible header are skipped (and counted), so garbage
  never blocks the stream;
- a `[` inside a packet that starts a plausible header means the packet was cut short (its `]` was
  lost): it is dropped and framing starts again there, instead of swallowing the packets after it;
- limits: a declared length or a packet longer than MAX_PACKET_BYTES is refused
  (`TrackerProtocolError`): the buffer never grows past that.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from shared.protocols.tracker import TrackerProtocolError

# Traccar's frame limit for this protocol (BaseProtocol.MAX_FRAME_LENGTH_LARGE). A watch's largest
# packet is a voice message of at most 15 s of AMR (about 24 KB escaped); positions are under 1 KB.
MAX_PACKET_BYTES = 32 * 1024
MAX_ID_DIGITS = 20  # the contract registers 10 to 15; longer is not a watch
_OPEN, _CLOSE, _STAR = 0x5B, 0x5D, 0x2A
_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_BRACKET = re.compile(rb"[\[\]]")
# The common case, a whole header, in one match (read_header): the same fields as _read_header_slowly.
_WHOLE_HEADER = re.compile(
    rb"\[([0-9A-Za-z]{2})\*([0-9]{1,%d})\*([0-9A-Fa-f]{4})\*(?:([0-9A-Fa-f]{4})\*)?" % MAX_ID_DIGITS
)
_HEX_PREFIX = re.compile(rb"[0-9A-Fa-f]{0,4}")


class Scan(enum.Enum):
    NOT_A_HEADER = "not a header"
    NEED_MORE = "need more bytes"


class Header(NamedTuple):
    manufacturer: str  # two characters: SG, 3G, CS, ZJ...
    device_id: str  # the digits the device is registered by
    packet_index: str | None  # the 4 hex digits some models add before the length, echoed in replies
    declared_length: int  # what the device says the content's length is (not trusted)
    size: int  # bytes from `[` to the `*` before the content, inclusive


class RawPacket(NamedTuple):
    header: Header
    content: bytes  # as received, still escaped
    raw: bytes  # the whole packet, brackets included


class CutShort(NamedTuple):
    """A packet whose `]` never came: the next packet's header started inside it."""

    size: int


def _field(buf: bytes | bytearray, start: int, allowed: frozenset[int], least: int, most: int) -> int | Scan:
    """Where the `*` closing a field of `least`..`most` bytes taken from `allowed` is, or why there is none."""
    end = len(buf)
    i = start
    while i < end and i - start <= most and buf[i] in allowed:
        i += 1
    if i - start > most:
        return Scan.NOT_A_HEADER
    if i == end:
        return Scan.NEED_MORE
    if buf[i] == _STAR and i - start >= least:
        return i
    return Scan.NOT_A_HEADER


def read_header(buf: bytes | bytearray, pos: int) -> Header | Scan:
    """The header starting at the `[` at `pos`, NOT_A_HEADER when these bytes cannot be one, NEED_MORE
    when the buffer ends before that can be told."""
    match = _WHOLE_HEADER.match(buf, pos)
    if match is not None:
        manufacturer, device_id, first, second = match.groups()
        if second is not None:
            return Header(manufacturer.decode(), device_id.decode(), first.decode(), int(second, 16), match.end() - pos)
        # Without an index only if the bytes after it cannot still become one: decided below otherwise.
        tail = buf[match.end() : match.end() + 5]
        if len(tail) == 5 or _HEX_PREFIX.fullmatch(tail) is None:
            return Header(manufacturer.decode(), device_id.decode(), None, int(first, 16), match.end() - pos)
    return _read_header_slowly(buf, pos)


def _read_header_slowly(buf: bytes | bytearray, pos: int) -> Header | Scan:
    """read_header field by field, telling a header cut by the buffer's end from no header."""
    star = _field(buf, pos + 1, _ALNUM, 2, 2)
    if isinstance(star, Scan):
        return star
    manufacturer = bytes(buf[pos + 1 : star]).decode("ascii")
    id_end = _field(buf, star + 1, _DIGITS, 1, MAX_ID_DIGITS)
    if isinstance(id_end, Scan):
        return id_end
    device_id = bytes(buf[star + 1 : id_end]).decode("ascii")
    first = _field(buf, id_end + 1, _HEX, 4, 4)
    if isinstance(first, Scan):
        return first
    # A second 4-hex field means the first was an index. Content never holds a bare `*` (binary
    # content escapes it), so a text keyword after the length cannot be mistaken for one.
    second = _field(buf, first + 1, _HEX, 4, 4)
    if second is Scan.NEED_MORE:
        return second
    if isinstance(second, int):
        index = bytes(buf[id_end + 1 : first]).decode("ascii")
        length = int(buf[first + 1 : second], 16)
        return Header(manufacturer, device_id, index, length, second + 1 - pos)
    return Header(manufacturer, device_id, None, int(buf[id_end + 1 : first], 16), first + 1 - pos)


class Framer:
    """Finds packets at the front of a buffer and consumes them from it.

    It remembers how far it scanned the packet at the front, so a packet arriving a few bytes at a
    time is not scanned again from its start on every read.
    """

    __slots__ = ("_depth", "_scanned_to", "skipped_bytes")

    def __init__(self) -> None:
        self.skipped_bytes = 0
        self._scanned_to = 0  # where the scan of the front packet's content resumes (0: not begun)
        self._depth = 0  # brackets opened inside the front packet's content and not closed yet

    def next_packet(self, buf: bytearray) -> RawPacket | CutShort | None:
        """The packet at the front of `buf` (consumed), or None until one is whole. Raises
        TrackerProtocolError for a packet longer than MAX_PACKET_BYTES."""
        header = self._resync(buf)
        if header is None:
            return None
        if header.size + header.declared_length + 1 > MAX_PACKET_BYTES:
            raise TrackerProtocolError(f"declared content length {header.declared_length} past the limit")
        end = self._find_end(buf, header)
        if end is None:
            if len(buf) > MAX_PACKET_BYTES:
                raise TrackerProtocolError(f"no end of packet within {MAX_PACKET_BYTES} bytes")
            return None
        self._scanned_to = self._depth = 0
        if isinstance(end, CutShort):
            del buf[: end.size]
            return end
        raw = bytes(buf[: end + 1])
        del buf[: end + 1]
        return RawPacket(header, raw[header.size : end], raw)

    def _resync(self, buf: bytearray) -> Header | None:
        """Skip to the first `[` starting a plausible header; its header, or None while none is whole."""
        pos = 0
        while True:
            pos = buf.find(_OPEN, pos)
            if pos < 0:
                self._skip(buf, len(buf))
                return None
            found = read_header(buf, pos)
            if found is not Scan.NOT_A_HEADER:
                self._skip(buf, pos)
                return found if isinstance(found, Header) else None
            pos += 1

    def _skip(self, buf: bytearray, count: int) -> None:
        if count:
            self.skipped_bytes += count
            del buf[:count]
            self._scanned_to = self._depth = 0

    def _find_end(self, buf: bytearray, header: Header) -> int | CutShort | None:
        """Where the front packet's closing `]` is, CutShort when another header starts inside it, None
        while neither is buffered."""
        pos = max(self._scanned_to, header.size)
        while True:
            match = _BRACKET.search(buf, pos)
            if match is None:
                self._scanned_to = len(buf)
                return None
            pos = match.start()
            if buf[pos] == _CLOSE:
                if self._depth == 0:
                    return pos
                self._depth -= 1
            else:
                inner = read_header(buf, pos)
                if isinstance(inner, Header):
                    return CutShort(pos)
                if inner is Scan.NEED_MORE:
                    self._scanned_to = pos  # decide once more bytes are in
                    return None
                self._depth += 1
            pos += 1


def encode_packet(manufacturer: str, device_id: str, content: str | bytes, index: str | None = None) -> bytes:
    """One packet. The length is the content's, in 4 upper-case hex digits as the manufacturer's
    documentation writes them (Traccar writes lower case; devices read both)."""
    body = content.encode("ascii") if isinstance(content, str) else content
    if len(body) > 0xFFFF:
        raise ValueError(f"content of {len(body)} bytes does not fit a 4-digit length")
    fields = [manufacturer, device_id] + ([index] if index is not None else []) + [f"{len(body):04X}"]
    return b"[" + "*".join(fields).encode("ascii") + b"*" + body + b"]"

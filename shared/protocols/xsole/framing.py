"""Cutting a byte stream into XSole frames: resync on magic, length limits, CRC."""

from __future__ import annotations

import binascii
import struct
from typing import NamedTuple

from shared.protocols.xsole.constants import MAGIC, VERSION

MIN_LENGTH = 2
MAX_LENGTH = 1024
HEADER_SIZE = 8  # magic, version, type, length, seq
_HEADER = struct.Struct(">2sBBHH")
_CRC = struct.Struct(">H")


class XSoleProtocolError(Exception):
    """The peer broke the framing rules badly enough that the connection must close."""


_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__: one per frame received


class RawFrame(NamedTuple):
    """A frame whose CRC matched: type, seq and the undecoded payload."""

    type: int
    seq: int
    payload: bytes


class BadCrc(NamedTuple):
    """A frame was dropped because its CRC did not match (it gets no ACK)."""

    type: int
    seq: int


def crc16(data: bytes | memoryview) -> int:
    """CRC-16/CCITT-FALSE, as the contract specifies."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_frame(frame_type: int, seq: int, payload: bytes = b"") -> bytes:
    """One complete frame, CRC included."""
    length = MIN_LENGTH + len(payload)
    if length > MAX_LENGTH:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the frame limit")
    body = _HEADER.pack(MAGIC, VERSION, frame_type, length, seq & 0xFFFF)[2:] + payload
    return MAGIC + body + _CRC.pack(crc16(body))


class FrameBuffer:
    """Accumulates received bytes and hands out whole frames.

    `feed` never fails; `next_frame` returns None until a whole frame is buffered,
    and raises XSoleProtocolError for a length outside 2..1024 (the contract closes
    the connection then, since nothing after it can be trusted to be framed).
    """

    __slots__ = ("_buf", "_pos", "skipped_bytes")

    def __init__(self) -> None:
        # Received bytes, immutable: in the common case a read holds whole frames
        # and is parsed where it lies, with no copy into a buffer.
        self._buf = b""
        self._pos = 0
        self.skipped_bytes = 0

    def feed(self, data: bytes) -> None:
        if self._pos < len(self._buf):
            self._buf = self._buf[self._pos :] + data  # a partial frame is left: at most ~1 KB
        else:
            self._buf = bytes(data)
        self._pos = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def unread(self) -> tuple[bytes, int]:
        """The buffer and where its unread bytes start, for a decoder that reads
        whole frames in place (`bulk.take_telemetry`) and then calls `consumed_to`."""
        return self._buf, self._pos

    def consumed_to(self, pos: int) -> None:
        self._pos = pos

    def next_frame(self) -> RawFrame | BadCrc | None:
        buf, pos = self._buf, self._pos
        end = len(buf)
        if end - pos < HEADER_SIZE or buf[pos] != 0x58 or buf[pos + 1] != 0x53:
            if not self._resync():
                return None
            buf, pos = self._buf, self._pos
            if end - pos < HEADER_SIZE:
                return None
        length = (buf[pos + 4] << 8) | buf[pos + 5]
        if length < MIN_LENGTH or length > MAX_LENGTH:
            raise XSoleProtocolError(f"frame length {length} outside {MIN_LENGTH}..{MAX_LENGTH}")
        crc_at = pos + 6 + length
        if end < crc_at + 2:
            return None
        self._pos = crc_at + 2
        frame_type = buf[pos + 3]
        seq = (buf[pos + 6] << 8) | buf[pos + 7]
        if crc16(buf[pos + 2 : crc_at]) != (buf[crc_at] << 8) | buf[crc_at + 1] or buf[pos + 2] != VERSION:
            return BadCrc(frame_type, seq)
        return _new_tuple(RawFrame, (frame_type, seq, buf[pos + HEADER_SIZE : crc_at]))

    def _resync(self) -> bool:
        """Skip to the next magic; True when one starts at the new position."""
        buf, pos = self._buf, self._pos
        end = len(buf)
        while True:
            if end - pos < 2:
                # Keep a lone trailing 'X': it may be the first half of a magic.
                self._skip_to(pos if (end - pos == 1 and buf[pos] == MAGIC[0]) else end)
                return False
            if buf[pos] == 0x58 and buf[pos + 1] == 0x53:
                return True
            found = buf.find(MAGIC, pos + 1)
            self._skip_to(found if found >= 0 else end - 1)
            pos = self._pos

    def _skip_to(self, new_pos: int) -> None:
        self.skipped_bytes += new_pos - self._pos
        self._pos = new_pos

"""Cutting a GT06 byte stream into packets: start bits, declared length, CRC-ITU, stop bits.

A packet is `78 78` + length (1 byte) or `79 79` + length (2 bytes), then the
protocol number, the content, a serial number (u16), the CRC-ITU of everything
from the length to the serial, and `0D 0A`. The length counts the protocol
number, the content, the serial and the CRC (5 + content).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from shared.protocols.crc16 import reflected_crc16

SHORT_START = b"\x78\x78"
LONG_START = b"\x79\x79"
STOP = b"\r\n"
MIN_LENGTH = 5  # protocol number, serial, CRC: a packet with no content
# A short packet's length is one byte, so at most 255. Long (0x7979) packets carry
# information transfers and command answers of a few hundred bytes; Traccar allows
# far more for photos, which solewatch does not take. A longer declared length is a
# stream that cannot be framed any more.
MAX_LONG_LENGTH = 4096
_U16 = struct.Struct(">H")


# CRC-ITU as the GT06 documents define it: CRC-16/X-25 (reflected 0x1021, init and xorout 0xFFFF).
crc_itu = reflected_crc16(0x8408, init=0xFFFF, xorout=0xFFFF)


class Packet(NamedTuple):
    """A packet whose CRC matched."""

    long: bool  # started 0x7979 (two length bytes)
    protocol: int
    content: bytes
    serial: int


class BadPacket(NamedTuple):
    """A well-framed packet whose CRC did not match: dropped, and unanswered."""

    protocol: int
    serial: int


class FramingError(Exception):
    """A declared length past the protocol's limit: nothing after it can be framed."""


def encode_packet(protocol: int, content: bytes, serial: int, *, long: bool = False) -> bytes:
    """One complete packet, CRC and stop bits included."""
    length = MIN_LENGTH + len(content)
    if length > (MAX_LONG_LENGTH if long else 0xFF):
        raise ValueError(f"content of {len(content)} bytes is too long for a {'long' if long else 'short'} packet")
    head = _U16.pack(length) if long else bytes((length,))
    body = head + bytes((protocol,)) + content + _U16.pack(serial & 0xFFFF)
    return (LONG_START if long else SHORT_START) + body + _U16.pack(crc_itu(body)) + STOP


def next_packet(buffer: bytearray) -> tuple[Packet | BadPacket | None, int]:
    """The first packet in `buffer` and how many bytes were skipped before it; consumes both.

    Returns (None, skipped) when more bytes are needed. Bytes that cannot start a
    packet are skipped: anything before a start, and a start whose stop bits are
    not where its length says (garbage that happened to look like a start). Raises
    FramingError for a long packet's length past MAX_LONG_LENGTH.
    """
    skipped = 0
    while True:
        start = _find_start(buffer)
        if start < 0:
            # Keep a trailing 0x78/0x79: it may be the first half of a start.
            keep = 1 if buffer and buffer[-1] in (0x78, 0x79) else 0
            skipped += len(buffer) - keep
            del buffer[: len(buffer) - keep]
            return None, skipped
        if start:
            skipped += start
            del buffer[:start]
        long = buffer[0] == 0x79
        head = 4 if long else 3
        if len(buffer) < head:
            return None, skipped
        length = _U16.unpack_from(buffer, 2)[0] if long else buffer[2]
        if long and length > MAX_LONG_LENGTH:
            raise FramingError(f"declared length {length} past {MAX_LONG_LENGTH}")
        if length < MIN_LENGTH:
            skipped += 2  # not a packet (Traccar's CRC-less Wi-Fi form has length 0): look further
            del buffer[:2]
            continue
        end = head + length + 2
        if len(buffer) < end:
            later = _whole_packet_after(buffer, 2)
            if later < 0:
                return None, skipped
            # A false start (noise before a real packet) would hold the real one until its claimed
            # length arrived, while the device waits for an answer: skip to the whole packet instead.
            skipped += later
            del buffer[:later]
            continue
        if buffer[end - 2 : end] != STOP:
            skipped += 2
            del buffer[:2]
            continue
        body = bytes(buffer[2 : end - 4])
        crc = _U16.unpack_from(buffer, end - 4)[0]
        del buffer[:end]
        protocol = body[head - 2]
        serial = _U16.unpack_from(body, len(body) - 2)[0]
        if crc_itu(body) != crc:
            return BadPacket(protocol, serial), skipped
        return Packet(long, protocol, body[head - 1 : -2], serial), skipped


def _whole_packet_after(buffer: bytearray, pos: int) -> int:
    """Where the first complete packet with a matching CRC starts at or after `pos`, or -1."""
    while True:
        found = _find_start(buffer, pos)
        if found < 0:
            return -1
        long = buffer[found] == 0x79
        head = 4 if long else 3
        if len(buffer) >= found + head:
            length = _U16.unpack_from(buffer, found + 2)[0] if long else buffer[found + 2]
            end = found + head + length + 2
            if MIN_LENGTH <= length and end <= len(buffer) and buffer[end - 2 : end] == STOP:
                body = bytes(buffer[found + 2 : end - 4])
                if crc_itu(body) == _U16.unpack_from(buffer, end - 4)[0]:
                    return found
        pos = found + 1


def _find_start(buffer: bytearray, pos: int = 0) -> int:
    short = buffer.find(SHORT_START, pos)
    long = buffer.find(LONG_START, pos)
    if short < 0:
        return long
    if long < 0:
        return short
    return min(short, long)

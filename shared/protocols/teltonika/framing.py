"""Cutting a Teltonika TCP byte stream into packets: the IMEI preamble, AVL data packets, the ping byte.

A connection carries, in this order, an IMEI preamble (u16 length, then the IMEI in ASCII digits) and
then packets of the form `00000000 | u32 data length | data | u32 CRC`, where data runs from the codec
id to the second record count and the CRC field holds CRC-16/IBM of the data in its low two bytes. Some
firmware also sends a lone 0xFF between packets to keep the link open (Traccar's frame decoder skips it).

Bytes that cannot start any of these are skipped to the next byte that can (counted); a packet whose CRC
does not match is dropped and the scan goes on just past its header, so a packet cut short by a device
fault costs only itself, not the good packet behind it.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

from shared.protocols.crc16 import reflected_crc16
from shared.protocols.tracker import TrackerProtocolError

CODEC_GH3000 = 0x07
CODEC_8 = 0x08
CODEC_8_EXTENDED = 0x8E
CODEC_12 = 0x0C
CODEC_13 = 0x0D
CODEC_14 = 0x0E
CODEC_15 = 0x0F
CODEC_16 = 0x10
# Every codec id Teltonika documents for TCP packets: a header naming one of these can start a packet.
KNOWN_CODECS = frozenset((CODEC_GH3000, CODEC_8, CODEC_8_EXTENDED, CODEC_12, CODEC_13, CODEC_14, CODEC_15, CODEC_16))

PING = 0xFF
MIN_IMEI_DIGITS = 8
MAX_IMEI_DIGITS = 17
# The smallest data field is a Codec 12 answer with no text (codec, count, type, u32 size, count).
MIN_DATA_LENGTH = 8
# Teltonika documents 1280 bytes as the largest AVL packet (512 on FMB6xx); Codec 8 Extended's variable
# length elements (BLE beacons, VIN, DTCs) and Codec 12 camera chunks run past it (2 KB in Traccar's
# tests). 16 KiB leaves room for those and bounds what a connection may make us hold.
MAX_DATA_LENGTH = 16 * 1024
HEADER_SIZE = 8  # four zero bytes and the data length
_HEADER = struct.Struct(">4xI")
_CRC_FIELD = struct.Struct(">I")
_PREAMBLE = b"\x00\x00\x00\x00"
# A packet can only start at a zero byte (the IMEI's length or the AVL preamble) or at a ping.
_CANDIDATE = re.compile(rb"[\x00\xff]")


# CRC-16/IBM (also called ARC): polynomial 0x8005 reflected, init 0, no final xor.
crc16_ibm = reflected_crc16(0xA001, init=0, xorout=0)


def encode_packet(data: bytes) -> bytes:
    """A whole TCP packet around `data` (codec id through the second count): preamble, length, CRC."""
    if not MIN_DATA_LENGTH <= len(data) <= MAX_DATA_LENGTH:
        raise ValueError(f"a data field of {len(data)} bytes is outside {MIN_DATA_LENGTH}..{MAX_DATA_LENGTH}")
    return _HEADER.pack(len(data)) + data + _CRC_FIELD.pack(crc16_ibm(data))


def encode_imei(imei: str) -> bytes:
    """The IMEI preamble a device opens its connection with."""
    if not imei.isdigit() or not MIN_IMEI_DIGITS <= len(imei) <= MAX_IMEI_DIGITS:
        raise ValueError(f"an IMEI is {MIN_IMEI_DIGITS} to {MAX_IMEI_DIGITS} digits, got {imei!r}")
    return struct.pack(">H", len(imei)) + imei.encode("ascii")


class ImeiPacket(NamedTuple):
    imei: str


class DataPacket(NamedTuple):
    """A packet whose CRC matched: its codec id and its data field (codec id through the second count)."""

    codec: int
    data: bytes


class BadChecksum(NamedTuple):
    codec: int


class Ping(NamedTuple):
    pass


class _Skip:
    """The head of the buffer cannot start a packet."""


Packet = ImeiPacket | DataPacket | BadChecksum | Ping
_PING = Ping()
_SKIP = _Skip()


def cut(buf: bytearray) -> tuple[Packet | None, int]:
    """The next packet at the head of `buf` (removed from it) or None when more bytes are needed, and how
    many bytes were skipped to find it. Raises TrackerProtocolError for a header declaring a data length
    past MAX_DATA_LENGTH."""
    skipped = 0
    while buf:
        verdict = _judge(buf)
        if verdict is None:
            return None, skipped
        if isinstance(verdict, _Skip):
            found = _CANDIDATE.search(buf, 1)
            drop = found.start() if found else len(buf)
            del buf[:drop]
            skipped += drop
            continue
        return verdict, skipped
    return None, skipped


def _judge(buf: bytearray) -> Packet | _Skip | None:
    """What the head of `buf` is: a packet (consumed), _SKIP when it cannot start one, None when the bytes
    so far could start one but it is not whole yet."""
    if buf[0] == PING:
        del buf[:1]
        return _PING
    if buf[0] != 0:
        return _SKIP
    if len(buf) < 2:
        return None
    if buf[1] != 0:
        return _imei(buf)
    return _data(buf)


def _imei(buf: bytearray) -> ImeiPacket | _Skip | None:
    length = buf[1]
    if not MIN_IMEI_DIGITS <= length <= MAX_IMEI_DIGITS:
        return _SKIP
    digits = bytes(buf[2 : 2 + length])
    if not all(0x30 <= d <= 0x39 for d in digits):
        return _SKIP
    if len(digits) < length:
        return None
    del buf[: 2 + length]
    return ImeiPacket(digits.decode("ascii"))


def _data(buf: bytearray) -> DataPacket | BadChecksum | _Skip | None:
    if buf[: min(len(buf), 4)] != _PREAMBLE[: min(len(buf), 4)]:
        return _SKIP
    if len(buf) < HEADER_SIZE + 1:
        return None
    (length,) = _HEADER.unpack_from(buf)
    codec = buf[HEADER_SIZE]
    if codec not in KNOWN_CODECS or length < MIN_DATA_LENGTH:
        return _SKIP
    if length > MAX_DATA_LENGTH:
        raise TrackerProtocolError(f"a data length of {length} bytes, past the limit of {MAX_DATA_LENGTH}")
    end = HEADER_SIZE + length
    if len(buf) < end + 4:
        return None
    data = bytes(buf[HEADER_SIZE:end])
    (crc_field,) = _CRC_FIELD.unpack_from(buf, end)
    if crc_field != crc16_ibm(data):
        # Rescan from just past the header: if this packet was cut short, the next good one starts in
        # what was taken for its body (never in its header, which was whole).
        del buf[: HEADER_SIZE + 1]
        return BadChecksum(codec)
    del buf[: end + 4]
    return DataPacket(codec, data)

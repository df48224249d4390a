"""Reflected 16-bit CRCs, table-driven: GT06's CRC-ITU (X-25) and Teltonika's CRC-16/IBM (ARC).

Python's binascii has only the unreflected CCITT variant (XSole's, `binascii.crc_hqx`);
these two differ from each other only by polynomial, start and final xor.
"""

from __future__ import annotations

from collections.abc import Callable

Crc16 = Callable[[bytes | bytearray | memoryview], int]


def reflected_crc16(polynomial: int, *, init: int, xorout: int) -> Crc16:
    """The CRC function for a reflected `polynomial` (given reversed, e.g. 0x8408 for 0x1021)."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ polynomial if crc & 1 else crc >> 1
        table.append(crc)
    lookup = tuple(table)

    def crc16(data: bytes | bytearray | memoryview) -> int:
        crc = init
        for byte in data:
            crc = (crc >> 8) ^ lookup[(crc ^ byte) & 0xFF]
        return crc ^ xorout

    return crc16

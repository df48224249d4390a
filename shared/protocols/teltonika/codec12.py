"""Codec 12: GPRS commands to the device (type 0x05) and its answers (type 0x06), as free ASCII text.

`00000000 | u32 length | 0C | 01 | type | u32 text size | text | 01 | u32 CRC`, the CRC over codec id
through the second count, as for AVL packets. An answer names no command: a device answers the
commands it was sent in order, so the session matches answers to what it sent first in, first out.
"""

from __future__ import annotations

import struct

from shared.protocols.teltonika.avl import Malformed
from shared.protocols.teltonika.framing import CODEC_12, encode_packet
from shared.protocols.xsole.constants import CommandCode

TYPE_COMMAND = 0x05
TYPE_RESPONSE = 0x06
_SIZE = struct.Struct(">I")

# XSole command -> the Teltonika SMS/GPRS command that does it. set-interval has no one command across
# models (the period parameters differ by model and mode); vibrate and alarm-acknowledged have none.
COMMAND_TEXT: dict[int, bytes] = {CommandCode.LOCATE_NOW: b"getgps", CommandCode.REBOOT: b"cpureset"}
COMMAND_OF_TEXT = {text: code for code, text in COMMAND_TEXT.items()}


def encode_message(message_type: int, text: bytes) -> bytes:
    """A whole Codec 12 packet carrying one command or answer."""
    data = bytes((CODEC_12, 1, message_type)) + _SIZE.pack(len(text)) + text + b"\x01"
    return encode_packet(data)


def decode_messages(data: bytes) -> list[tuple[int, bytes]]:
    """The (type, text) messages of a Codec 12 data field. Raises Malformed."""
    count = data[1]
    if count == 0 or data[-1] != count:
        raise Malformed(f"message counts {count} and {data[-1]} (they must agree, and not be 0)")
    pos = 2
    messages = []
    for _ in range(count):
        if pos + 5 > len(data) - 1:
            raise Malformed(f"cut short at byte {pos}")
        message_type = data[pos]
        (size,) = _SIZE.unpack_from(data, pos + 1)
        pos += 5
        if pos + size > len(data) - 1:
            raise Malformed(f"a text of {size} bytes past the end of the packet")
        messages.append((message_type, data[pos : pos + size]))
        pos += size
    if pos != len(data) - 1:
        raise Malformed(f"{len(data) - 1 - pos} bytes left over after {count} messages")
    return messages

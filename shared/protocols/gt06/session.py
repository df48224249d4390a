"""A GT06 connection, server side: packets to XSole events, and the replies GT06 devices expect.

See docs/protocols/gt06.md for the packet types, the field mapping and the sources.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import ClassVar

from shared.protocols.gt06.fields import GPS_BLOCK_SIZE, gps_fix, login_utc_offset, status_block, text_position
from shared.protocols.gt06.framing import BadPacket, FramingError, Packet, encode_packet, next_packet
from shared.protocols.tracker import BATTERY_UNKNOWN, Decoded, TrackerProtocolError, TrackerSession, stable_seq
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID, CommandCode, CommandStatus
from shared.protocols.xsole.messages import Alarm, CommandResult, DeviceEvent, Heartbeat, Position

LOGIN = 0x01
GPS = 0x10
GPS_LBS_6 = 0x11
GPS_LBS = 0x12
STATUS = 0x13
COMMAND_ANSWER = 0x15
GPS_LBS_STATUS = 0x16
LBS_STATUS = 0x19
COMMAND_ANSWER_LONG = 0x21
GPS_LBS_UTC = 0x22
ALARM_UTC = 0x26
ALARM_FENCES_UTC = 0x27
ONLINE_COMMAND = 0x80
TIME_REQUEST = 0x8A
GPS_LBS_4G = 0xA0
ALARM_FENCES_4G = 0xA4
LBS_ALARM_4G = 0xA5

# The types the documents mark "(UTC)"; the older ones carry the device's clock in the zone its
# login declares (UTC when the login is the short form that declares none).
_UTC_TYPES = frozenset((GPS_LBS_UTC, ALARM_UTC, ALARM_FENCES_UTC, GPS_LBS_4G, ALARM_FENCES_4G))
_POSITION_TYPES = frozenset((GPS, GPS_LBS_6, GPS_LBS, GPS_LBS_UTC, GPS_LBS_4G))
_ALARM_TYPES = frozenset((GPS_LBS_STATUS, ALARM_UTC, ALARM_FENCES_UTC, ALARM_FENCES_4G))
_LBS_ALARM_TYPES = frozenset((LBS_STATUS, LBS_ALARM_4G))
# Types the server sends: a device echoing one gets no answer (as Traccar does).
_SERVER_TYPES = frozenset((ONLINE_COMMAND, 0x81, 0x82))
_FENCE_BYTE = frozenset((ALARM_FENCES_UTC, ALARM_FENCES_4G))  # a fence number follows the status block
_STATUS_SIZE = 5
# The online command's server flag: a marker and the command's seq, so a device's answer names the
# command it answers even on a later connection (a reconnect resends nothing already answered).
_FLAG_MARKER = 0x5357_0000  # "SW"
_COMMAND_TEXT: dict[int, str] = {CommandCode.LOCATE_NOW: "WHERE#", CommandCode.REBOOT: "RESET#"}
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Session(TrackerSession):
    protocol: ClassVar[str] = "gt06"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock  # for the packets with no time of their own (heartbeats) and time requests
        self._utc_offset_s = 0  # the device clock's zone, from its login
        self._login_serial = 0  # echoed by the login's answer

    # -- framing --------------------------------------------------------------------------

    def _next_packet(self) -> Decoded | None:
        while True:
            try:
                found, skipped = next_packet(self._buffer)
            except FramingError as exc:
                raise TrackerProtocolError(str(exc)) from exc
            self.skipped_bytes += skipped
            if found is None:
                return None
            if isinstance(found, BadPacket):
                self._bad()  # no reply: the device sends it again
                continue
            decoded = self._decode(found)
            if decoded is None:
                self._bad()  # a known type too short to read: unanswered, like a bad CRC
                continue
            return decoded

    # -- decoding -------------------------------------------------------------------------

    def _decode(self, packet: Packet) -> Decoded | None:
        kind = packet.protocol
        content = packet.content
        if kind == LOGIN:
            self._login_serial = packet.serial
            return self._login(content)
        if kind in _POSITION_TYPES:
            return self._position_packet(packet)
        if kind in _ALARM_TYPES or kind in _LBS_ALARM_TYPES:
            return self._alarm_packet(packet)
        if kind == STATUS:
            if len(content) < 3:
                return None
            status = status_block(content[:3] + b"\x00\x00")
            heartbeat = Heartbeat(packet.serial, int(self._clock()), status.battery, 0)
            return Decoded(events=(heartbeat,), reply=echo(packet))
        if kind in (COMMAND_ANSWER, COMMAND_ANSWER_LONG):
            return self._command_answer(packet)
        if kind == TIME_REQUEST:
            now = time.gmtime(self._clock())
            when = bytes((now.tm_year - 2000, now.tm_mon, now.tm_mday, now.tm_hour, now.tm_min, now.tm_sec))
            return Decoded(reply=encode_packet(TIME_REQUEST, when, packet.serial))
        # Information transfers (0x94), Wi-Fi and cell-only fixes and the model-specific types:
        # nothing solewatch stores. Short ones are answered as Traccar answers them, so the device
        # carries on; long ones and echoed server types get nothing.
        if packet.long or kind in _SERVER_TYPES:
            return Decoded()
        return Decoded(reply=echo(packet))

    def _login(self, content: bytes) -> Decoded | None:
        if len(content) < 8:
            return None
        digits = content[:8].hex()
        if not digits.isdigit() or digits[0] != "0":
            return None  # not 15 BCD digits after a zero nibble
        self._utc_offset_s = login_utc_offset(content)
        return Decoded(imei=digits[1:], login=True)

    def login_reply(self, packet: Decoded, *, accepted: bool) -> bytes:
        # GT06 has no refusal: a refused device gets no answer and is disconnected.
        return encode_packet(LOGIN, b"", self._login_serial) if accepted else b""

    def _offset(self, kind: int) -> int:
        return 0 if kind in _UTC_TYPES else self._utc_offset_s

    def _position_packet(self, packet: Packet) -> Decoded | None:
        content = packet.content
        if len(content) < GPS_BLOCK_SIZE:
            return None
        fix = gps_fix(content, self._offset(packet.protocol))
        if fix.ts is None:
            self.rejected += 1  # no date, no position; still answered, since resending changes nothing
            return Decoded(reply=echo(packet))
        flags = (FLAG_FIX_VALID if fix.valid else 0) | (FLAG_BUFFERED if _reuploaded(packet) else 0)
        position = Position(
            packet.serial,
            fix.ts,
            fix.lat_e7,
            fix.lon_e7,
            0,
            fix.speed_cms,
            fix.course_ddeg,
            fix.sats,
            0,
            BATTERY_UNKNOWN,
            flags,
        )
        return Decoded(events=(position,), reply=echo(packet))

    def _alarm_packet(self, packet: Packet) -> Decoded | None:
        kind, content = packet.protocol, packet.content
        tail = 1 if kind in _FENCE_BYTE else 0
        has_gps = kind in _ALARM_TYPES
        if len(content) < (GPS_BLOCK_SIZE if has_gps else 0) + _STATUS_SIZE + tail:
            return None
        # The status block ends the packet (before the fence number of 0x27/0xA4): anchoring it at
        # the end reads the variants whose cell block is longer or has no length byte alike.
        status = status_block(content[len(content) - tail - _STATUS_SIZE : len(content) - tail])
        events: list[DeviceEvent] = []
        now = int(self._clock())
        ts, lat_e7, lon_e7, flags = now, 0, 0, 0
        if has_gps:
            fix = gps_fix(content, self._offset(kind))
            lat_e7, lon_e7 = fix.lat_e7, fix.lon_e7
            flags = FLAG_FIX_VALID if fix.valid else 0
            if fix.ts is None:
                self.rejected += 1
            else:
                ts = fix.ts
                events.append(
                    Position(
                        packet.serial,
                        ts,
                        lat_e7,
                        lon_e7,
                        0,
                        fix.speed_cms,
                        fix.course_ddeg,
                        fix.sats,
                        0,
                        status.battery,
                        flags,
                    )
                )
        for alarm_kind in status.alarm_kinds():
            # Its seq from what it says, not the serial (which a resend renews): stored once.
            seq = stable_seq(kind, int(alarm_kind), content)
            events.append(Alarm(seq, ts, int(alarm_kind), lat_e7, lon_e7, status.battery, flags))
        return Decoded(events=tuple(events), reply=echo(packet))

    def _command_answer(self, packet: Packet) -> Decoded | None:
        content = packet.content
        if packet.protocol == COMMAND_ANSWER:
            if len(content) < 5 or content[0] < 4:
                return None
            flag = _U32.unpack_from(content, 1)[0]
            text = content[5 : 1 + content[0]].decode("ascii", "replace")
            reply = echo(packet)
        else:
            if len(content) < 5:
                return None
            flag = _U32.unpack_from(content, 0)[0]
            text = content[5:].decode("ascii" if content[4] == 1 else "utf-16-be", "replace")
            reply = b""  # the long answer is not acknowledged (Traccar sends nothing)
        events: list[DeviceEvent] = []
        fix = text_position(text, self._utc_offset_s)
        if fix is not None:  # the answer to WHERE# (locate-now) is the device's position
            events.append(
                Position(
                    packet.serial,
                    fix.ts,
                    fix.lat_e7,
                    fix.lon_e7,
                    0,
                    fix.speed_cms,
                    fix.course_ddeg,
                    0,
                    0,
                    BATTERY_UNKNOWN,
                    FLAG_FIX_VALID,
                )
            )
        # An answer without our marker is the device's own message (an ICCID report, the answer to
        # another server's command): answered, and no result.
        if flag & 0xFFFF_0000 == _FLAG_MARKER:
            events.append(CommandResult(packet.serial, flag & 0xFFFF, CommandStatus.DONE))
        return Decoded(events=tuple(events), reply=reply)

    # -- commands -------------------------------------------------------------------------

    def command(self, seq: int, cmd: int, args: bytes = b"") -> bytes | None:
        """An online command (0x80) carrying the SMS command text; its server flag holds `seq`."""
        text = _COMMAND_TEXT.get(cmd)
        if text is None:
            return None
        return online_command(_FLAG_MARKER | (seq & 0xFFFF), text, seq)


def echo(packet: Packet) -> bytes:
    """The acknowledgement GT06 devices expect: their protocol number and serial, short form."""
    return encode_packet(packet.protocol, b"", packet.serial)


def online_command(flag: int, text: str, serial: int) -> bytes:
    body = text.encode("ascii")
    return encode_packet(ONLINE_COMMAND, bytes((4 + len(body),)) + _U32.pack(flag) + body, serial)


def command_text_code(content: bytes) -> int | None:
    """The XSole command code an online command's content stands for, None for another text."""
    text = content[5 : 1 + content[0]] if content else b""
    for code, known in _COMMAND_TEXT.items():
        if text == known.encode("ascii"):
            return code
    return None


def _reuploaded(packet: Packet) -> bool:
    """Whether a 0x22/0xA0 location says it was stored while offline (its re-upload byte)."""
    if packet.protocol not in (GPS_LBS_UTC, GPS_LBS_4G):
        return False
    content = packet.content
    at = GPS_BLOCK_SIZE
    if len(content) < at + 2:
        return False
    mcc = _U16.unpack_from(content, at)[0]
    at += 2 + (2 if mcc & 0x8000 else 1)  # bit 15 of the MCC: a two-byte MNC
    at += 4 + 8 if packet.protocol == GPS_LBS_4G else 2 + 3  # LAC and cell id
    at += 2  # ACC, upload mode
    return len(content) > at and content[at] == 0x01

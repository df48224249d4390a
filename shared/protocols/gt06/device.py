"""A GT06 device's side: the packets a Concox pendant or tracker sends, and what it understands back.

It writes the UTC packet types of the JM-VL03 document (0x22 location, 0x26 alarm) and the short
login, which declares no time zone, so its times are UTC throughout.
"""

from __future__ import annotations

from typing import ClassVar

from shared.protocols.gt06.fields import CODE_OF_KIND, encode_gps, level_of_percent
from shared.protocols.gt06.framing import BadPacket, FramingError, encode_packet, next_packet
from shared.protocols.gt06.session import (
    ALARM_UTC,
    COMMAND_ANSWER,
    GPS_LBS_UTC,
    LOGIN,
    ONLINE_COMMAND,
    STATUS,
    command_text_code,
)
from shared.protocols.tracker import FromServer, TrackerDevice
from shared.protocols.xsole.constants import AlarmKind
from shared.protocols.xsole.messages import imei_to_bcd

_NO_CELL = b"\x00\x00" + b"\x00" + b"\x00\x00" + b"\x00\x00\x00"  # MCC, MNC, LAC, cell id: none known
_TERMINAL_GPS_FIXED = 0x40  # terminal information: bit 6, GPS positioned
_GSM_STRONG = 0x04
_ENGLISH = b"\x00\x02"


class Device(TrackerDevice):
    protocol: ClassVar[str] = "gt06"
    alarm_kinds: ClassVar[frozenset[int]] = frozenset(CODE_OF_KIND)

    def __init__(self, imei: str) -> None:
        super().__init__(imei)
        self._serial = 0

    def _next_serial(self) -> int:
        self._serial = (self._serial + 1) & 0xFFFF
        return self._serial

    def login(self) -> bytes:
        return encode_packet(LOGIN, imei_to_bcd(self.imei), self._next_serial())

    def position(self, *, ts: int, lat_e7: int, lon_e7: int, speed_cms: int, course_ddeg: int, battery: int) -> bytes:
        """A 0x22 location (GT06 locations carry no battery: it comes with heartbeats and alarms)."""
        gps = encode_gps(
            ts=ts,
            lat_e7=lat_e7,
            lon_e7=lon_e7,
            speed_kmh=round(speed_cms * 0.036),
            course_deg=round(course_ddeg / 10),
            sats=9,
            valid=True,
        )
        acc_mode_reupload = b"\x00\x00\x00"  # ACC off, fixed-interval upload, sent live
        return encode_packet(GPS_LBS_UTC, gps + _NO_CELL + acc_mode_reupload, self._next_serial())

    def alarm(self, kind: int, *, ts: int, lat_e7: int, lon_e7: int, battery: int) -> bytes:
        code = CODE_OF_KIND.get(AlarmKind(kind))
        if code is None:
            raise ValueError(f"GT06 has no alarm for {AlarmKind(kind).name}")
        gps = encode_gps(ts=ts, lat_e7=lat_e7, lon_e7=lon_e7, speed_kmh=0, course_deg=0, sats=9, valid=True)
        status = bytes((_TERMINAL_GPS_FIXED, level_of_percent(battery), _GSM_STRONG, code)) + _ENGLISH[1:]
        return encode_packet(ALARM_UTC, gps + bytes((1 + len(_NO_CELL),)) + _NO_CELL + status, self._next_serial())

    def heartbeat(self, *, ts: int, battery: int) -> bytes:
        """A status packet (0x13); it carries no time, so `ts` is when it is sent."""
        status = bytes((_TERMINAL_GPS_FIXED, level_of_percent(battery), _GSM_STRONG)) + _ENGLISH
        return encode_packet(STATUS, status, self._next_serial())

    def feed(self, data: bytes) -> list[FromServer]:
        self._received += data
        out: list[FromServer] = []
        while True:
            try:
                found, _ = next_packet(self._received)
            except FramingError:
                self._received.clear()
                return out
            if found is None:
                return out
            if isinstance(found, BadPacket):
                continue
            raw = encode_packet(found.protocol, found.content, found.serial, long=found.long)
            if found.protocol == LOGIN:
                out.append(FromServer("login", raw))
            elif found.protocol == ONLINE_COMMAND:
                out.append(FromServer("command", raw, command=command_text_code(found.content)))
            else:
                out.append(FromServer("ack", raw))

    def answer(self, command: FromServer) -> bytes:
        """The classic answer (0x15): the command's server flag echoed, then the device's text."""
        found, _ = next_packet(bytearray(command.data))
        if found is None or isinstance(found, BadPacket) or found.protocol != ONLINE_COMMAND:
            return b""
        flag = found.content[1:5]
        text = b"OK!"
        content = bytes((4 + len(text),)) + flag + text + _ENGLISH
        return encode_packet(COMMAND_ANSWER, content, self._next_serial())

    def answer_is_answered(self, command: FromServer) -> bool:
        return True  # the server echoes a 0x15 answer like any packet

"""A Teltonika device's side: the packets a tracker sends, and what it makes of the server's bytes.

What the simulator, the integration tests and `solewatch bench ingest --protocol teltonika` drive. Each
packet is built as a Teltonika tracker builds it: the IMEI preamble, one AVL record per position, alarm
or heartbeat (Codec 8 by default, Codec 8 Extended or 16 on request), Codec 12 answers to commands.
"""

from __future__ import annotations

import struct
from typing import ClassVar

from shared.protocols.teltonika import codec12
from shared.protocols.teltonika.avl import Malformed, Record, encode_records
from shared.protocols.teltonika.framing import CODEC_8, CODEC_12, HEADER_SIZE, encode_imei, encode_packet
from shared.protocols.teltonika.mapping import ALARM_IO_OF, IO_BATTERY_LEVEL
from shared.protocols.tracker import BATTERY_UNKNOWN, FromServer, TrackerDevice
from shared.protocols.xsole.constants import AlarmKind, CommandCode

PRIORITY_LOW = 0
PRIORITY_PANIC = 2
SATS_WITH_FIX = 9
_U32 = struct.Struct(">I")
# What a device answers, as text, to the commands it knows (the shape of Teltonika's examples).
_ANSWERS: dict[int, bytes] = {
    CommandCode.LOCATE_NOW: b"GPS:1 Sat:9 Lat:0.000000 Long:0.000000 Alt:0 Speed:0 Dir:0",
    CommandCode.REBOOT: b"Reset",
}


class Device(TrackerDevice):
    protocol: ClassVar[str] = "teltonika"
    # The alarm kinds a Teltonika device can raise (no low-battery alarm IO: see mapping.py).
    alarm_kinds: ClassVar[frozenset[int]] = frozenset(ALARM_IO_OF)

    def __init__(self, imei: str, *, codec: int = CODEC_8) -> None:
        super().__init__(imei)
        self.codec = codec
        self._awaiting_login_reply = False

    def login(self) -> bytes:
        self._awaiting_login_reply = True
        return encode_imei(self.imei)

    def position(self, *, ts: int, lat_e7: int, lon_e7: int, speed_cms: int, course_ddeg: int, battery: int) -> bytes:
        speed_kmh = round(speed_cms * 3.6 / 100)
        return self._record(ts, lat_e7, lon_e7, SATS_WITH_FIX, speed_kmh, course_ddeg // 10, 0, battery, {})

    def alarm(self, kind: int, *, ts: int, lat_e7: int, lon_e7: int, battery: int) -> bytes:
        io_id = ALARM_IO_OF.get(kind)
        if io_id is None:
            raise ValueError(f"a Teltonika device has no alarm for {AlarmKind(kind).name}")
        sats = SATS_WITH_FIX if (lat_e7, lon_e7) != (0, 0) else 0
        return self._record(ts, lat_e7, lon_e7, sats, 0, 0, io_id, battery, {io_id: (1, 1)}, PRIORITY_PANIC)

    def heartbeat(self, *, ts: int, battery: int) -> bytes:
        """A record made without a fix ever: no coordinates, no satellites (what the server takes as alive)."""
        return self._record(ts, 0, 0, 0, 0, 0, 0, battery, {})

    def _record(
        self,
        ts: int,
        lat_e7: int,
        lon_e7: int,
        sats: int,
        speed_kmh: int,
        angle: int,
        event_io: int,
        battery: int,
        io: dict[int, tuple[int, int]],
        priority: int = PRIORITY_LOW,
    ) -> bytes:
        if battery != BATTERY_UNKNOWN:
            io = {IO_BATTERY_LEVEL: (1, battery), **io}
        record = Record(ts * 1000, priority, lon_e7, lat_e7, 0, angle, sats, speed_kmh, event_io, io)
        return encode_packet(encode_records(self.codec, [record]))

    def feed(self, data: bytes) -> list[FromServer]:
        self._received += data
        out: list[FromServer] = []
        buf = self._received
        while buf:
            if self._awaiting_login_reply:
                self._awaiting_login_reply = False
                out.append(FromServer("login", bytes(buf[:1]), accepted=buf[0] == 1))
                del buf[:1]
            elif buf[:4] == b"\x00\x00\x00\x00"[: min(4, len(buf))]:
                # Four zero bytes start a Codec 12 command (a records-accepted count is never 0).
                if len(buf) < HEADER_SIZE:
                    break
                (length,) = _U32.unpack_from(buf, 4)
                if len(buf) < HEADER_SIZE + length + 4:
                    break
                packet = bytes(buf[: HEADER_SIZE + length + 4])
                del buf[: len(packet)]
                out.append(FromServer("command", packet, command=_command_of(packet)))
            elif len(buf) >= 4:
                out.append(FromServer("ack", bytes(buf[:4])))
                del buf[:4]
            else:
                break
        return out

    def answer(self, command: FromServer) -> bytes:
        text = _ANSWERS.get(command.command) if command.command is not None else None
        return codec12.encode_message(codec12.TYPE_RESPONSE, text or b"Unknown command")


def _command_of(packet: bytes) -> int | None:
    """The XSole command code of a Codec 12 command packet, None for one it does not stand for."""
    data = packet[HEADER_SIZE:-4]
    if len(data) < 2 or data[0] != CODEC_12:
        return None
    try:
        messages = codec12.decode_messages(data)
    except Malformed:
        return None
    for message_type, text in messages:
        if message_type == codec12.TYPE_COMMAND:
            code = codec12.COMMAND_OF_TEXT.get(text)
            return int(code) if code is not None else None
    return None

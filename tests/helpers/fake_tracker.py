"""A tiny tracker protocol for testing the listener's plumbing without any real codec.

Lines of ASCII, each ending in a newline:

    LOGIN,<imei>                                    answered OK (accepted) or NO (refused)
    POS,<ts>,<lat_e7>,<lon_e7>,<speed_kmh>,<battery>   answered OK once durable
    SOS,<ts>,<lat_e7>,<lon_e7>,<battery>               answered OK once durable
    HB,<ts>,<battery>                                  answered OK once durable

A battery of `-` means the packet says nothing of it (BATTERY_UNKNOWN). The
protocol has one downlink command, locate-now (`LOCATE,<seq>`); every other
command is one it cannot carry. It is plugged in with
`shared.protocols.registry.register`, the way a real codec package is found.
"""

from __future__ import annotations

from shared.protocols.tracker import (
    BATTERY_UNKNOWN,
    Decoded,
    FromServer,
    TrackerDevice,
    TrackerProtocolError,
    TrackerSession,
    kmh_to_cms,
    stable_seq,
)
from shared.protocols.xsole import Alarm, AlarmKind, CommandCode, Heartbeat, Position
from shared.protocols.xsole.constants import FLAG_FIX_VALID

NAME = "fake"
MAX_LINE = 200
OK, NO = b"OK\n", b"NO\n"


def _battery(text: str) -> int:
    return BATTERY_UNKNOWN if text == "-" else int(text)


class FakeSession(TrackerSession):
    protocol = NAME

    def _next_packet(self) -> Decoded | None:
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    raise TrackerProtocolError(f"a line longer than {MAX_LINE} bytes")
                return None
            line = bytes(self._buffer[:end]).decode("ascii", "replace")
            del self._buffer[: end + 1]
            packet = self._decode(line.split(","))
            if packet is not None:
                return packet
            self._bad()

    def _decode(self, fields: list[str]) -> Decoded | None:
        try:
            match fields:
                case ["LOGIN", imei]:
                    return Decoded(imei=imei, login=True)
                case ["POS", ts, lat, lon, speed, battery]:
                    seq = stable_seq("pos", ts, lat, lon)
                    position = Position(
                        seq, int(ts), int(lat), int(lon), 0, kmh_to_cms(float(speed)), 0, 8, 9, _battery(battery), 0
                    )
                    return Decoded(events=(position._replace(flags=FLAG_FIX_VALID),), reply=OK)
                case ["SOS", ts, lat, lon, battery]:
                    seq = stable_seq("sos", ts, lat, lon)
                    alarm = Alarm(seq, int(ts), AlarmKind.SOS, int(lat), int(lon), _battery(battery), FLAG_FIX_VALID)
                    return Decoded(events=(alarm,), reply=OK)
                case ["HB", ts, battery]:
                    return Decoded(events=(Heartbeat(stable_seq("hb", ts), int(ts), _battery(battery), 0),), reply=OK)
        except ValueError:
            return None
        return None

    def login_reply(self, packet: Decoded, *, accepted: bool) -> bytes:
        return OK if accepted else NO

    def command(self, seq: int, cmd: int, args: bytes = b"") -> bytes | None:
        if cmd == CommandCode.LOCATE_NOW:
            return f"LOCATE,{seq}\n".encode()
        return None


class FakeDevice(TrackerDevice):
    protocol = NAME

    def login(self) -> bytes:
        return f"LOGIN,{self.imei}\n".encode()

    def position(self, *, ts: int, lat_e7: int, lon_e7: int, speed_cms: int, course_ddeg: int, battery: int) -> bytes:
        level = "-" if battery == BATTERY_UNKNOWN else str(battery)
        return f"POS,{ts},{lat_e7},{lon_e7},{speed_cms * 0.036:g},{level}\n".encode()

    def alarm(self, kind: int, *, ts: int, lat_e7: int, lon_e7: int, battery: int) -> bytes:
        assert kind == AlarmKind.SOS, "the fake protocol only says SOS"
        level = "-" if battery == BATTERY_UNKNOWN else str(battery)
        return f"SOS,{ts},{lat_e7},{lon_e7},{level}\n".encode()

    def heartbeat(self, *, ts: int, battery: int) -> bytes:
        return f"HB,{ts},{'-' if battery == BATTERY_UNKNOWN else battery}\n".encode()

    def feed(self, data: bytes) -> list[FromServer]:
        self._received += data
        out = []
        while (end := self._received.find(b"\n")) >= 0:
            line = bytes(self._received[: end + 1])
            del self._received[: end + 1]
            if line.startswith(b"LOCATE,"):
                out.append(FromServer("command", line, command=CommandCode.LOCATE_NOW))
            else:
                out.append(FromServer("ack", line, accepted=line == OK))
        return out

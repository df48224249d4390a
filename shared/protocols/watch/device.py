"""A 3G/4G SOS watch's side of the protocol, for the simulator, the integration tests and the benches.

It writes packets as the manufacturer documents them (`[3G*8800000015*000D*LK,50,100,100]`) and
reads the server's: replies (LK, AL...) and commands (CR, UPLOAD, FIND, MESSAGE, RESET), which it
answers with a packet of the same keyword, as a watch does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from shared.protocols.tracker import BATTERY_UNKNOWN, FromServer, TrackerDevice
from shared.protocols.watch.commands import CODES
from shared.protocols.watch.framing import Framer, RawPacket, encode_packet
from shared.protocols.watch.location import KIND_BITS
from shared.protocols.xsole.constants import AlarmKind


def _degrees(value_e7: int) -> str:
    """1e-7 degrees as the watch writes them, unsigned (the hemisphere letter carries the sign)."""
    whole, fraction = divmod(abs(value_e7), 10**7)
    return f"{whole}.{fraction:07d}"


def location_data(
    *,
    ts: int,
    lat_e7: int,
    lon_e7: int,
    speed_cms: int,
    course_ddeg: int,
    battery: int,
    status: int = 0,
    valid: bool = True,
    alt_m: int = 0,
    sats: int = 8,
) -> str:
    """The location fields of UD/UD2/AL packets ("Appendix I"), with no cell tower and no WiFi."""
    when = datetime.fromtimestamp(ts, UTC)
    kmh = speed_cms * 36 / 1000  # exact in 3 decimals: cm/s are whole
    return ",".join(
        (
            when.strftime("%d%m%y"),
            when.strftime("%H%M%S"),
            "A" if valid else "V",
            _degrees(lat_e7),
            "S" if lat_e7 < 0 else "N",
            _degrees(lon_e7),
            "W" if lon_e7 < 0 else "E",
            f"{kmh:.3f}",
            f"{course_ddeg / 10:.1f}",
            str(alt_m),
            str(sats),
            "100",  # GSM signal grade
            "" if battery == BATTERY_UNKNOWN else str(battery),
            "0",  # steps
            "0",  # tumbles
            f"{status:08X}",
            "0",  # cell towers
            "0",  # WiFi access points
        )
    )


class Device(TrackerDevice):
    protocol = "watch"
    acks_positions = False  # the watch expects no reply to UD/UD2: nothing tells it a position is kept
    acks_alarms = True
    acks_heartbeats = True
    alarm_kinds: ClassVar[frozenset[int]] = frozenset(KIND_BITS)

    def __init__(self, imei: str, manufacturer: str = "3G") -> None:
        super().__init__(imei)
        self.manufacturer = manufacturer
        self._framer = Framer()

    def _packet(self, content: str) -> bytes:
        return encode_packet(self.manufacturer, self.imei, content)

    def position(
        self,
        *,
        ts: int,
        lat_e7: int,
        lon_e7: int,
        speed_cms: int,
        course_ddeg: int,
        battery: int,
        buffered: bool = False,
    ) -> bytes:
        """UD, or UD2 for a position recorded while offline and sent late."""
        fields = location_data(
            ts=ts, lat_e7=lat_e7, lon_e7=lon_e7, speed_cms=speed_cms, course_ddeg=course_ddeg, battery=battery
        )
        return self._packet(("UD2," if buffered else "UD,") + fields)

    def alarm(self, kind: int, *, ts: int, lat_e7: int, lon_e7: int, battery: int) -> bytes:
        bit = KIND_BITS.get(AlarmKind(kind))
        if bit is None:
            raise ValueError(f"a watch has no {AlarmKind(kind).name} alarm")
        fields = location_data(
            ts=ts, lat_e7=lat_e7, lon_e7=lon_e7, speed_cms=0, course_ddeg=0, battery=battery, status=1 << bit
        )
        return self._packet("AL," + fields)

    def heartbeat(self, *, ts: int, battery: int) -> bytes:
        """LK with steps, tumbles and battery. LK carries no time: `ts` is not sent."""
        return self._packet(f"LK,0,0,{battery}")

    def link_keep(self) -> bytes:
        """The bare LK a watch sends to keep its connection."""
        return self._packet("LK")

    def feed(self, data: bytes) -> list[FromServer]:
        self._received += data
        out: list[FromServer] = []
        while (packet := self._framer.next_packet(self._received)) is not None:
            if not isinstance(packet, RawPacket):
                continue  # cut short: nothing to act on
            keyword = packet.content.split(b",", 1)[0].decode("ascii", "replace")
            code = CODES.get(keyword)
            if code is None:
                out.append(FromServer("ack", packet.raw))
            else:
                out.append(FromServer("command", packet.raw, command=int(code)))
        return out

    def answer(self, command: FromServer) -> bytes:
        """The watch's answer: the command's keyword alone (`[3G*5678901234*0002*CR]`)."""
        keyword = command.data[1:-1].rsplit(b"*", 1)[-1].split(b",", 1)[0]
        return self._packet(keyword.decode("ascii"))

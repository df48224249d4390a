"""Driving the four tracker protocols' devices over real TCP, for the end-to-end tests (CONTRACT §10).

Each protocol's `Device` (shared/protocols/<name>/device.py) builds what a real device sends and
reads what the server answers; `TrackerClient` puts one on a TCP connection and waits for what
it understood. `PROFILES` says what each protocol carries and acknowledges, so a test
parametrized over the protocols states its expectation once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shared.protocols import registry
from shared.protocols.tracker import FromServer, TrackerDevice
from shared.protocols.xsole.constants import AlarmKind

TRACKERS = ("gt06", "h02", "watch", "teltonika")
LAT, LON = 436163000, 70553000  # 43.6163 N, 7.0553 E
SPEED_CMS, COURSE_DDEG = 1000, 900  # 10 m/s = 36 km/h = 19.44 kn, heading east: exact or nearly in each protocol
BATTERY = 50  # a level each protocol that carries one says exactly (GT06's 0-6 scale has 50 % = 3)


@dataclass(frozen=True)
class Profile:
    """What a protocol's packets carry, as its docs/protocols/<name>.md says."""

    name: str
    logs_in: bool  # a login packet answered before anything else (GT06, Teltonika); H02 and watch name the
    # device in every packet, so the first position logs in
    position_battery: bool  # its position packets carry a battery level
    alarm_battery: bool  # its alarm packets do
    degrees_precision: float  # the coordinate resolution of its position packets, in degrees
    speed_precision: float  # m/s: GT06 and Teltonika send whole km/h, H02 knots to 2 decimals
    command_it_cannot_carry: str | None  # a command name the protocol has no equivalent for


def _profile(
    name: str, logs_in: bool, battery_in: tuple[str, ...], degrees: float, speed: float, cannot: str | None
) -> Profile:
    return Profile(name, logs_in, "position" in battery_in, "alarm" in battery_in, degrees, speed, cannot)


PROFILES = {
    # GT06: coordinates in 1/30000 of a minute, whole km/h; its locations carry no battery, its alarms do.
    "gt06": _profile("gt06", True, ("alarm",), 1 / 1_800_000, 0.28, "vibrate"),
    # H02: DDMM.MMMMM and knots to 2 decimals; its text V1 packets carry no battery (HTBT does).
    "h02": _profile("h02", False, (), 1 / 6_000_000, 0.01, "vibrate"),
    # Watch: 7-decimal degrees, km/h to 3 decimals; every XSole command has a watch keyword (vibrate
    # is FIND), so none ends unsupported.
    "watch": _profile("watch", False, ("position", "alarm"), 1e-7, 0.001, None),
    # Teltonika: 1e-7 degrees, whole km/h, the battery level IO in every record.
    "teltonika": _profile("teltonika", True, ("position", "alarm"), 1e-7, 0.28, "vibrate"),
}


def imei_for(protocol: str, n: int) -> str:
    """A 15-digit identifier (valid for every protocol), distinct per protocol and `n`."""
    return f"86{TRACKERS.index(protocol) + 1}{n:012d}"


def alarms_it_can_say(protocol: str) -> list[AlarmKind]:
    """The XSole alarm kinds the protocol's Device can send (its `alarm` raises ValueError for others).
    Asked of `alarm` itself rather than `Device.alarm_kinds`, which H02's and the watch's leave empty."""
    device = registry.codec(protocol).device(imei_for(protocol, 0))
    kinds = []
    for kind in AlarmKind:
        try:
            device.alarm(kind, ts=int(time.time()), lat_e7=LAT, lon_e7=LON, battery=BATTERY)
        except ValueError:
            continue
        kinds.append(kind)
    return kinds


class TrackerClient:
    """One tracker device on a real TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, device: TrackerDevice):
        self.reader, self.writer, self.device = reader, writer, device
        self.profile = PROFILES[device.protocol]
        self.understood: list[FromServer] = []  # what the server sent, not yet taken by `receive`

    @classmethod
    async def connect(cls, port: int, protocol: str, imei: str) -> TrackerClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, registry.codec(protocol).device(imei))

    async def send(self, *packets: bytes) -> None:
        self.writer.write(b"".join(packets))
        await self.writer.drain()

    async def receive(self, count: int = 1, timeout: float = 5.0) -> list[FromServer]:
        """The next `count` things the server said (TimeoutError if they do not come)."""
        deadline = time.monotonic() + timeout
        while len(self.understood) < count:
            data = await asyncio.wait_for(self.reader.read(65536), max(deadline - time.monotonic(), 0.01))
            if not data:
                raise ConnectionError(f"closed by the server after {self.understood}")
            self.understood += self.device.feed(data)
        taken, self.understood = self.understood[:count], self.understood[count:]
        return taken

    async def until_closed(self, timeout: float = 5.0) -> bytes:
        """Everything the server sent until it closed the connection."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def log_in(self) -> None:
        """The login packet and its answer, for the protocols that have one (nothing otherwise)."""
        if self.profile.logs_in:
            await self.send(self.device.login())
            [answer] = await self.receive()
            assert answer.kind == "login" and answer.accepted, answer

    def position(self, ts: int, lat_e7: int = LAT, lon_e7: int = LON) -> bytes:
        return self.device.position(
            ts=ts, lat_e7=lat_e7, lon_e7=lon_e7, speed_cms=SPEED_CMS, course_ddeg=COURSE_DDEG, battery=BATTERY
        )

    def sos(self, ts: int) -> bytes:
        return self.device.alarm(1, ts=ts, lat_e7=LAT, lon_e7=LON, battery=BATTERY)

    def heartbeat(self, ts: int) -> bytes:
        return self.device.heartbeat(ts=ts, battery=BATTERY)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    """`check()`'s first truthy result, or its last one after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)

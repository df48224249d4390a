"""Load generator for a tracker protocol: many devices sending positions as fast as answers allow.

Run as its own process like bench/loadgen.py (`python -m bench.tracker_loadgen`, spec as JSON on
stdin, figures as JSON in the file it names). Each connection is one device of the protocol, its
packets built by the protocol's `Device` (shared/protocols/<name>/device.py), as the simulator's:

- it logs in as the protocol does (GT06's and Teltonika's login; for H02 and the watch, whose every
  packet names the device, a first heartbeat) and starts once that is answered;
- for protocols whose positions are answered (GT06, H02's V1, Teltonika), it keeps `window` positions
  sent and not yet answered; each answer confirms one;
- the watch answers no position (UD): it sends positions in groups of `window // 2` (at least one),
  each followed by a heartbeat (LK), at most two groups unanswered. The server answers packets in
  order, and the LK only once everything before it was handled (on the listener: made durable), so
  the LK's answer confirms its group: the load stays closed-loop, as with the other protocols.

`confirmed` counts the positions confirmed during the measuring window.
"""

from __future__ import annotations

import asyncio
import functools
import os
import resource
import sys
import time
from collections import deque
from typing import Any, cast

import orjson

from shared.protocols import registry
from shared.protocols.tracker import TrackerDevice

SITE_LAT_E7, SITE_LON_E7 = 436_160_000, 70_550_000


class TrackerLoad(asyncio.Protocol):
    def __init__(self, gen: TrackerLoadGenerator, device: TrackerDevice, index: int) -> None:
        self.gen = gen
        self.device = device
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.logged_in = False
        self.sent = 0  # positions built, for their timestamps
        # Unanswered packets, oldest first: how many positions each answer confirms.
        self.unanswered: deque[int] = deque()
        self.grouped = not device.acks_positions

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's
        hello = self.device.login()
        if not hello:
            hello = self.device.heartbeat(ts=self.gen.base_ts, battery=80)
            self.unanswered.append(0)  # its answer confirms no position: it logs in
        self.transport.write(hello)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gen.lost += 1

    def position(self) -> bytes:
        self.sent += 1
        return self.device.position(
            ts=self.gen.base_ts + self.sent,
            lat_e7=SITE_LAT_E7 + self.index * 10 + self.sent % 1000,
            lon_e7=SITE_LON_E7,
            speed_cms=140,
            course_ddeg=2700,
            battery=80,
        )

    def top_up(self) -> None:
        gen = self.gen
        if self.transport is None or not gen.sending or not self.logged_in:
            return
        out = bytearray()
        if self.grouped:
            group = max(1, gen.window // 2)
            while len(self.unanswered) < 2:
                for _ in range(group):
                    out += self.position()
                out += self.device.heartbeat(ts=gen.base_ts + self.sent, battery=80)
                self.unanswered.append(group)
        else:
            while len(self.unanswered) < gen.window:
                out += self.position()
                self.unanswered.append(1)
        if out:
            self.transport.write(bytes(out))

    def data_received(self, data: bytes) -> None:
        gen = self.gen
        for said in self.device.feed(data):
            if said.kind == "login":
                if said.accepted:
                    self._logged_in()
                else:
                    gen.refused += 1
            elif said.kind == "ack" and self.unanswered:
                confirmed = self.unanswered.popleft()
                if not self.logged_in:
                    self._logged_in()
                elif gen.measuring:
                    gen.confirmed += confirmed
            elif said.kind == "command" and self.transport is not None:
                self.transport.write(self.device.answer(said))
        self.top_up()

    def _logged_in(self) -> None:
        self.logged_in = True
        self.gen.logged_in += 1


class TrackerLoadGenerator:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.host, self.port = spec["host"], spec["port"]
        self.device_type = registry.codec(spec["protocol"]).device
        self.imeis: list[str] = spec["imeis"]
        self.window: int = spec.get("window", 8)
        self.warmup: float = spec.get("warmup", 2.0)
        self.seconds: float = spec.get("seconds", 5.0)
        # In the past (the contract refuses timestamps 5 minutes ahead), apart for each process.
        self.base_ts = int(time.time()) - 86_400 + spec.get("ts_offset", 0)
        self.connections: list[TrackerLoad] = []
        self.sending = self.measuring = False
        self.logged_in = self.refused = self.lost = self.confirmed = 0

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        for index, imei in enumerate(self.imeis):
            conn = TrackerLoad(self, self.device_type(imei), index)
            await loop.create_connection(functools.partial(_same, conn), self.host, self.port)
            self.connections.append(conn)
            if index % 500 == 499:
                await asyncio.sleep(0)
        deadline = time.monotonic() + 60
        while self.logged_in + self.refused < len(self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.sending = True
        for conn in self.connections:
            conn.top_up()
        await asyncio.sleep(self.warmup)
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        self.confirmed = 0
        self.measuring = True
        wall = [time.time(), 0.0]
        started = time.perf_counter()
        await asyncio.sleep(self.seconds)
        self.measuring = False
        elapsed = time.perf_counter() - started
        wall[1] = time.time()
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        self.sending = False
        return {
            "connections": len(self.connections),
            "logged_in": self.logged_in,
            "refused": self.refused,
            "lost": self.lost,
            "confirmed": self.confirmed,
            "seconds": elapsed,
            "cpu_seconds": (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
            "window": wall,
        }


def _same(conn: TrackerLoad) -> TrackerLoad:
    return conn


def main() -> None:
    spec = orjson.loads(sys.stdin.buffer.readline())
    try:
        import uvloop

        result = uvloop.run(TrackerLoadGenerator(spec).run())
    except ImportError:
        result = asyncio.run(TrackerLoadGenerator(spec).run())
    with open(spec["result_path"], "wb") as out:
        out.write(orjson.dumps(result))
    os._exit(0)  # skip closing thousands of sockets one by one


if __name__ == "__main__":
    main()

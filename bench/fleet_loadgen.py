"""Load generator for `solewatch bench fleet`: insoles that each send one frame at a time, as real ones do.

Unlike bench/loadgen.py (as many frames as the ACKs allow), every insole here
sends ONE POSITION per second, in its own write (so its own TCP segment), at
its own phase of the second: phases are spread evenly over all the insoles of
all the generator processes, so the offered load is smooth, not a burst each
second. Half a second after its POSITION, an insole sends a HEARTBEAT every
30 s and an ACTIVITY every 20 s (never in the same second), also each in its
own write. Every frame's ACK is timed, from its write to the ACK's arrival.

Run as its own process (`python -m bench.fleet_loadgen`): the spec comes as
one JSON line on stdin; once its insoles are logged in it writes one JSON
line on stdout and waits for a second stdin line with the wall-clock time to
start at (so that every process starts the same second); its figures go to
`result_path` as JSON.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import gc
import os
import resource
import struct
import sys
import time
from array import array
from typing import Any, cast

import orjson

from shared.protocols.xsole import Login, encode

_HEADER = struct.Struct(">2sBBHH")
_POSITION = struct.Struct(">IiihHHBBBB")
_HEARTBEAT = struct.Struct(">IBb")
_ACTIVITY = struct.Struct(">IHBBBB")
_WALKING = 2  # an activity state no detector raises an alert for
HEARTBEAT_EVERY_S = 30
ACTIVITY_EVERY_S = 20
GRACE_S = 10.0  # frames not acknowledged this long after the last one was written count as lost
TICK_S = 0.001  # how often the schedule is looked at: frames due meanwhile go out then, one write each


def _frame(frame_type: int, seq: int, payload: bytes) -> bytes:
    body = _HEADER.pack(b"XS", 1, frame_type, 2 + len(payload), seq) + payload
    return body + binascii.crc_hqx(body[2:], 0xFFFF).to_bytes(2, "big")


class Insole(asyncio.Protocol):
    __slots__ = ("activity_at", "buf", "gen", "heartbeat_at", "imei", "lat_e7", "sent", "seq", "token", "transport")

    def __init__(self, gen: FleetGenerator, imei: str, token: bytes, number: int):
        self.gen = gen
        self.imei = imei
        self.token = token
        self.transport: asyncio.Transport | None = None
        self.seq = 1
        self.sent: dict[int, float] = {}  # seq -> when written, until its ACK comes
        self.buf = b""
        self.lat_e7 = 436160000 + number * 10
        # The seconds (modulo their periods) of its HEARTBEATs and ACTIVITYs: spread over the fleet,
        # and apart (equal modulo 10 never, so both periods never fall on the same second).
        self.heartbeat_at = number % HEARTBEAT_EVERY_S
        self.activity_at = (number + 5) % ACTIVITY_EVERY_S

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's
        self.transport.write(encode(Login(1, self.imei, 0x0102, self.token)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gen.disconnected += 1

    def _send(self, frame_type: int, payload: bytes) -> None:
        if self.transport is None:
            return
        self.seq = seq = (self.seq + 1) & 0xFFFF or 1
        self.sent[seq] = time.perf_counter()
        self.transport.write(_frame(frame_type, seq, payload))
        self.gen.sent += 1
        self.gen.outstanding += 1

    def send_position(self, ts: int) -> None:
        payload = _POSITION.pack(ts, self.lat_e7 + ts % 100, 70550000, 12, 140, 2705, 9, 8, 87, 1)
        self._send(0x10, payload)

    def send_extra(self, ts: int) -> None:
        """The HEARTBEAT or ACTIVITY due in second `ts`, if any."""
        if ts % HEARTBEAT_EVERY_S == self.heartbeat_at:
            self._send(0x02, _HEARTBEAT.pack(ts, 87, -71))
        elif ts % ACTIVITY_EVERY_S == self.activity_at:
            self._send(0x11, _ACTIVITY.pack(ts, ts % 60_000, _WALKING, 104, 87, 0))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        gen = self.gen
        now = time.perf_counter()
        while end - pos >= 8:
            total = 8 + ((buf[pos + 4] << 8) | buf[pos + 5])
            if end - pos < total:
                break
            frame_type = buf[pos + 3]
            if frame_type == 0x80:  # ACK: seq, then status
                sent = self.sent.pop((buf[pos + 6] << 8) | buf[pos + 7], None)
                if sent is not None:
                    gen.outstanding -= 1
                if buf[pos + 8] != 0:
                    gen.refused += 1
                elif sent is not None:
                    gen.acked += 1
                    if gen.measure_from <= sent < gen.measure_to:
                        gen.latencies.append(now - sent)
                    if gen.measure_from <= now < gen.measure_to:
                        gen.acked_in_window += 1
            elif frame_type == 0x81 and buf[pos + 8] == 0:  # LOGIN_ACK, accepted
                gen.logged_in += 1
            pos += total
        self.buf = buf[pos:]


class FleetGenerator:
    def __init__(self, spec: dict[str, Any]):
        self.host: str = spec["host"]
        self.port: int = spec["port"]
        # (imei, token hex, number): number is the insole's place in the whole fleet, its phase number/fleet.
        self.insoles: list[tuple[str, str, int]] = spec["insoles"]
        self.fleet: int = spec["fleet"]
        self.warmup: float = spec["warmup"]
        self.seconds: float = spec["seconds"]
        # After the last frame, the longest to wait for the last ACKs: what is still unanswered then is lost.
        self.grace: float = spec.get("grace", GRACE_S)
        self.connections: list[Insole] = []
        self.phases: list[float] = []  # of each connection, in [0, 1), ascending
        self.sent = self.acked = self.acked_in_window = self.refused = 0
        self.outstanding = 0  # frames written and not acknowledged yet
        self.logged_in = self.disconnected = 0
        self.latencies = array("d")  # of the frames written in the measuring window
        self.measure_from = self.measure_to = float("inf")
        self.lag_max = 0.0  # the latest a frame went out after its time
        self.late_frames = 0  # frames written more than 5 ms after their time

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        for count, (imei, token_hex, number) in enumerate(sorted(self.insoles, key=lambda insole: insole[2])):
            conn = Insole(self, imei, bytes.fromhex(token_hex), number)
            await loop.create_connection(functools.partial(_same, conn), self.host, self.port)
            self.connections.append(conn)
            self.phases.append(number / self.fleet)
            if count % 500 == 499:
                await asyncio.sleep(0)  # let LOGIN_ACKs in while connecting thousands
        deadline = time.monotonic() + 120
        while self.logged_in < len(self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def drive(self, start_wall: float) -> dict[str, Any]:
        """Send on schedule from `start_wall` (wall clock) through the warm-up and the measuring window."""
        start = time.perf_counter() + (start_wall - time.time())  # the same instant on the precise clock
        first_ts = int(start_wall)
        self.measure_from = start + self.warmup
        self.measure_to = self.measure_from + self.seconds
        window_wall = (start_wall + self.warmup, start_wall + self.warmup + self.seconds)
        usage0 = None
        conns, phases, count = self.connections, self.phases, len(self.connections)
        # Two cursors over the insoles in phase order: their POSITIONs, and half a second later their extras.
        main = extra = 0
        main_second = extra_second = 0
        while time.perf_counter() < start:
            await asyncio.sleep(TICK_S)
        while True:
            now = time.perf_counter()
            if usage0 is None and now >= self.measure_from:
                usage0 = resource.getrusage(resource.RUSAGE_SELF)
            if now >= self.measure_to:
                break
            while count and (due := start + main_second + phases[main]) <= now:
                conns[main].send_position(first_ts + main_second)
                self._lag(time.perf_counter() - due)
                main += 1
                if main == count:
                    main, main_second = 0, main_second + 1
            while count and (due := start + 0.5 + extra_second + phases[extra]) <= now:
                conns[extra].send_extra(first_ts + extra_second)
                extra += 1
                if extra == count:
                    extra, extra_second = 0, extra_second + 1
            await asyncio.sleep(TICK_S)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = 0.0 if usage0 is None else (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
        deadline = time.perf_counter() + self.grace
        while self.outstanding and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        lost = sum(len(conn.sent) for conn in conns)
        return {
            "connections": count,
            "logged_in": self.logged_in,
            "disconnected": self.disconnected,
            "sent": self.sent,
            "acked": self.acked,
            "acked_in_window": self.acked_in_window,
            "refused": self.refused,
            "lost": lost,
            "cpu_seconds": cpu,
            "window": window_wall,
            "lag_max_ms": self.lag_max * 1000,
            "late_frames": self.late_frames,
            "latencies": self.latencies.tolist(),
        }

    def _lag(self, lag: float) -> None:
        if lag > self.lag_max:
            self.lag_max = lag
        if lag > 0.005:
            self.late_frames += 1


def _same(conn: Insole) -> Insole:
    return conn


async def _main() -> None:
    stdin = sys.stdin.buffer
    loop = asyncio.get_running_loop()
    spec = orjson.loads(await loop.run_in_executor(None, stdin.readline))
    generator = FleetGenerator(spec)
    await generator.connect()
    # The insoles live as long as the process: the collector need not walk them again and again.
    gc.freeze()
    sys.stdout.buffer.write(orjson.dumps({"logged_in": generator.logged_in}) + b"\n")
    sys.stdout.flush()
    start = orjson.loads(await loop.run_in_executor(None, stdin.readline))["start_at"]
    result = await generator.drive(start)
    # Through a file: a large result on a pipe would race the os._exit below.
    with open(spec["result_path"], "wb") as out:
        out.write(orjson.dumps(result))


def main() -> None:
    import uvloop

    uvloop.run(_main())
    os._exit(0)  # skip closing thousands of sockets one by one


if __name__ == "__main__":
    main()

"""Load generator: many insole connections sending POSITION frames as fast as ACKs allow.

Run as its own process (`python -m bench.loadgen`, spec as JSON on stdin, figures
as JSON on stdout) so that it does not share an event loop or a GIL with the
server it measures. Like real firmware, each connection keeps a window of
unacknowledged frames; with `rate` set, a token bucket caps what it offers.
SIGTERM ends the warmup or the measuring window early: the figures cover the
window as far as it went.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import os
import resource
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from shared.protocols.xsole import Login, encode

_POSITION = struct.Struct(">2sBBHHIiihHHBBBB")
_POSITION_LENGTH = 2 + 22
LATENCY_SAMPLE_EVERY = 8


@dataclass
class Figures:
    acked: int = 0
    refused: int = 0
    logins: int = 0
    latencies: list[float] = field(default_factory=list)


class InsoleLoad(asyncio.Protocol):
    __slots__ = ("buf", "gen", "imei", "index", "inflight", "sent_at", "seq", "token", "tokens", "transport")

    def __init__(self, gen: LoadGenerator, imei: str, token: bytes, index: int):
        self.gen = gen
        self.imei = imei
        self.token = token
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.seq = 1
        self.inflight = 0
        self.tokens = 0.0
        self.sent_at: dict[int, float] = {}
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's
        self.transport.write(encode(Login(1, self.imei, 0x0102, self.token)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gen.lost += 1

    def frame(self) -> bytes:
        self.seq = seq = (self.seq + 1) & 0xFFFF or 1
        body = _POSITION.pack(
            b"XS",
            1,
            0x10,
            _POSITION_LENGTH,
            seq,
            self.gen.base_ts + seq,
            436160000 + self.index * 10 + seq % 1000,
            70550000,
            12,
            140,
            2705,
            9,
            8,
            87,
            1,
        )
        return body + binascii.crc_hqx(body[2:], 0xFFFF).to_bytes(2, "big")

    def top_up(self) -> None:
        """Send frames while the window (and the rate budget, if any) allows."""
        gen = self.gen
        if self.transport is None or not gen.sending:
            return
        room = gen.window - self.inflight
        if gen.rate_per_conn:
            room = min(room, int(self.tokens))
            self.tokens -= max(room, 0)
        if room <= 0:
            return
        now = time.perf_counter()
        frames = []
        for _ in range(room):
            frames.append(self.frame())
            if self.seq % LATENCY_SAMPLE_EVERY == 0:
                self.sent_at[self.seq] = now
                if gen.record_sends and gen.measuring:
                    gen.sends.append((self.imei, gen.base_ts + self.seq, time.time()))
        self.inflight += room
        self.transport.write(b"".join(frames))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        gen = self.gen
        now = time.perf_counter()
        while end - pos >= 8:
            length = (buf[pos + 4] << 8) | buf[pos + 5]
            total = 8 + length
            if end - pos < total:
                break
            frame_type = buf[pos + 3]
            seq = (buf[pos + 6] << 8) | buf[pos + 7]
            status = buf[pos + 8]
            if frame_type == 0x80:
                self.inflight -= 1
                if status == 0:
                    if gen.measuring:
                        gen.figures.acked += 1
                        sent = self.sent_at.pop(seq, None)
                        if sent is not None:
                            gen.figures.latencies.append(now - sent)
                    else:
                        self.sent_at.pop(seq, None)
                else:
                    gen.figures.refused += 1
            elif frame_type == 0x81:
                if status == 0:
                    gen.figures.logins += 1
                    gen.logged_in += 1
            pos += total
        self.buf = buf[pos:]
        self.top_up()


class LoadGenerator:
    def __init__(self, spec: dict[str, Any]):
        self.host = spec["host"]
        self.port = spec["port"]
        self.credentials = spec["credentials"]
        self.window = spec.get("window", 8)
        self.rate_per_conn = spec.get("rate", 0) / max(len(self.credentials), 1)
        self.warmup = spec.get("warmup", 2.0)
        self.seconds = spec.get("seconds", 5.0)
        self.idle = spec.get("idle", False)  # log in and hold the connection, send nothing
        # In the past (the contract refuses timestamps 5 minutes ahead), and apart
        # for each run against the same store so frames are new, not retransmissions.
        self.base_ts = int(time.time()) - 86_400 + spec.get("ts_offset", 0)
        self.figures = Figures()
        self.connections: list[InsoleLoad] = []
        self.sending = False
        self.measuring = False
        self.logged_in = 0
        self.lost = 0
        self.window_wall = [0.0, 0.0]
        # With record_sends, the wall-clock send time of sampled frames, by (IMEI, ts):
        # another process (a Socket.IO client) can then time the frame end to end.
        self.record_sends = spec.get("record_sends", False)
        self.sends: list[tuple[str, int, float]] = []
        # Set by SIGTERM: the warmup or the window ends now, and the figures so far are reported.
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def _for(self, seconds: float) -> None:
        """`seconds`, or less if asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        for index, (imei, token_hex) in enumerate(self.credentials):
            conn = InsoleLoad(self, imei, bytes.fromhex(token_hex), index)
            await loop.create_connection(functools.partial(_same, conn), self.host, self.port)
            self.connections.append(conn)
            if index % 500 == 499:
                await asyncio.sleep(0)  # let LOGIN_ACKs in while connecting thousands
        deadline = time.monotonic() + 60
        while self.logged_in < len(self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.idle:
            return self.report(0.0, 0.0)
        self.sending = True
        ticker = asyncio.create_task(self._tick()) if self.rate_per_conn else None
        for conn in self.connections:
            conn.top_up()
        await self._for(self.warmup)
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        self.figures.acked = 0
        self.measuring = True
        self.window_wall = [time.time(), 0.0]
        started = time.perf_counter()
        await self._for(self.seconds)
        self.measuring = False
        elapsed = time.perf_counter() - started
        self.window_wall[1] = time.time()
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        self.sending = False
        if ticker:
            ticker.cancel()
        cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
        return self.report(elapsed, cpu)

    async def _tick(self, every: float = 0.02) -> None:
        # Grants follow the clock, not the tick count, so a late tick still offers the full rate.
        cap = max(self.window, self.rate_per_conn * every * 2)
        last = time.perf_counter()
        while True:
            await asyncio.sleep(every)
            now = time.perf_counter()
            grant = self.rate_per_conn * (now - last)
            last = now
            for conn in self.connections:
                conn.tokens = min(conn.tokens + grant, cap)
                conn.top_up()

    def report(self, elapsed: float, cpu: float) -> dict[str, Any]:
        return {
            "connections": len(self.connections),
            "logged_in": self.logged_in,
            "lost": self.lost,
            "acked": self.figures.acked,
            "refused": self.figures.refused,
            "seconds": elapsed,
            "cpu_seconds": cpu,
            "latencies": self.figures.latencies,
            "window": self.window_wall,
            "sends": self.sends,
        }


def _same(conn: InsoleLoad) -> InsoleLoad:
    return conn


def main() -> None:
    spec = orjson.loads(sys.stdin.buffer.readline())  # one line: stdin stays open in idle mode
    runner: Callable[..., Any]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    generator = LoadGenerator(spec)

    async def run_and_hold() -> dict[str, Any]:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, generator.stop)
        result = await generator.run()
        if spec.get("idle"):
            # Hold the connections until the parent has measured and closes our stdin.
            sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
            sys.stdout.flush()
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)
        return result

    result = runner(run_and_hold())
    if not spec.get("idle"):
        # Through a file: a large result on a pipe would race the os._exit below.
        with open(spec["result_path"], "wb") as out:
            out.write(orjson.dumps(result))
    os._exit(0)  # skip closing thousands of sockets one by one


if __name__ == "__main__":
    main()

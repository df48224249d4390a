"""Dashboards for the benches, in a process of their own: `python -m bench.dashboard_clients`.

Each dashboard is a raw WebSocket speaking the Engine.IO 4 / Socket.IO 5 text
protocol, signed in with an access token. By default a bare asyncio protocol
reads the server's frames by hand, without per-message deflate (about a
microsecond per event); with `deflate`, the `websockets` library negotiates
per-message deflate as browsers do (over ten microseconds per event, and the
server compresses every event for every dashboard). python-socketio's client
costs more still (its packet objects, a task per event, the json module): a
few processes of it could not keep up with 100 dashboards on the two cores the
server also runs on.

A `position` event is read by slicing, not parsed: only its IMEI, its time
and the arrival time are kept, in arrays (16 bytes an event).

Driven over stdin/stdout, one JSON line each way:
- in: {"url", "token", "clients", "stall", "deflate"}; out: "ready" once all are connected
  (with `stall`, each stops reading its connection at once: a stalled tab);
- in: {"sends_path", "window", "result_path"}: time the sampled sends (IMEI,
  device time, wall-clock send time) against the events received so far, count
  the events in the window, write the figures, forget the events; out: "done";
- in: {"quit": true}.
"""

from __future__ import annotations

import asyncio
import calendar
import socket
import sys
import time
from array import array
from bisect import bisect_left
from typing import Any, cast

import orjson
from websockets.asyncio.client import ClientConnection, connect

_IMEI = '"imei":"'
_TS = '"ts":"'


class Received:
    """One dashboard's position events: per IMEI, device times (epoch s) and arrival times, in order."""

    def __init__(self) -> None:
        self.ts: dict[str, array[int]] = {}
        self.arrivals: dict[str, array[float]] = {}
        self.arrival_all: array[float] = array("d")

    def clear(self) -> None:
        self.ts.clear()
        self.arrivals.clear()
        self.arrival_all = array("d")


_epoch_cache: dict[str, int] = {}


def _epoch(iso: str) -> int:
    seconds = _epoch_cache.get(iso)
    if seconds is None:
        if len(_epoch_cache) > 100_000:
            _epoch_cache.clear()
        seconds = _epoch_cache[iso] = calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
    return seconds


def _record(received: Received, frame: str, now: float) -> None:
    i = frame.find(_IMEI) + len(_IMEI)
    j = frame.find(_TS, i) + len(_TS)
    imei = frame[i : i + 15]
    if imei not in received.ts:
        received.ts[imei], received.arrivals[imei] = array("q"), array("d")
    received.ts[imei].append(_epoch(frame[j : j + 20]))
    received.arrivals[imei].append(now)
    received.arrival_all.append(now)


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked WebSocket frame (clients must mask; a zero key leaves the payload as is)."""
    if len(payload) < 126:
        header = bytes((0x80 | opcode, 0x80 | len(payload)))
    else:  # a token: under 64 KiB
        header = bytes((0x80 | opcode, 0x80 | 126)) + len(payload).to_bytes(2, "big")
    return header + b"\0\0\0\0" + payload


class LeanDashboard(asyncio.Protocol):
    """A dashboard as a bare asyncio protocol: HTTP upgrade, unmasked server frames read by hand,
    no per-message deflate. About a microsecond per event, where the `websockets` client with
    deflate costs over ten: with it, 100 dashboards took more CPU than the server they measured."""

    def __init__(self, host: str, port: int, token: str, received: Received):
        self.request = (
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c29sZXdhdGNoIGJlbmNoIQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.auth = ("40" + orjson.dumps({"token": token}).decode()).encode()
        self.received = received
        self.buf = b""
        self.upgraded = False
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(True)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf + data if self.buf else data
        pos = 0
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"upgrade refused: {buf[:60]!r}")
            self.upgraded, pos = True, end + 4
        size = len(buf)
        while size - pos >= 2:
            opcode, length = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if size - start < length:
                break
            pos = start + length
            self._frame(opcode, buf[start:pos], now)
        self.buf = buf[pos:]

    def _frame(self, opcode: int, payload: bytes, now: float) -> None:
        assert self.transport is not None
        if opcode == 0x1:
            if payload.startswith(b'42["position"'):
                _record(self.received, payload.decode(), now)
            elif payload == b"2":
                self.transport.write(_client_frame(0x1, b"3"))  # Engine.IO PING: PONG
            elif payload.startswith(b"0"):
                self.transport.write(_client_frame(0x1, self.auth))  # Engine.IO OPEN: Socket.IO CONNECT
            elif payload.startswith(b"40") and not self.ready.done():
                self.ready.set_result(None)
            elif payload.startswith(b"44") and not self.ready.done():
                self.ready.set_exception(RuntimeError(f"refused: {payload!r}"))
        elif opcode == 0x9:
            self.transport.write(_client_frame(0xA, payload))  # WebSocket ping: pong
        elif opcode == 0x8:
            self.transport.close()


async def lean_dashboard(url: str, token: str, received: Received, *, ready: asyncio.Event) -> bool:
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    protocol = LeanDashboard(host, int(port), token, received)
    await loop.create_connection(lambda: protocol, host, int(port))
    await asyncio.wait_for(protocol.ready, 30)
    ready.set()
    return bool(await protocol.closed)


async def dashboard(url: str, token: str, received: Received, *, stall: bool, ready: asyncio.Event) -> bool:
    """Run one dashboard until its connection ends; True when the server cut it.

    With the `websockets` library and per-message deflate, as a browser: the stalled
    dashboard, and the others when asked (`deflate`)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    if stall:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # its buffers fill in a moment
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    ws: ClientConnection = await connect(
        f"ws://{host}:{port}/socket.io/?EIO=4&transport=websocket",
        sock=sock,
        ping_interval=None,  # Engine.IO pings, answered below
        max_queue=None if not stall else 16,
        compression=None if stall else "deflate",
        open_timeout=30,
    )
    await ws.recv()  # Engine.IO OPEN
    await ws.send("40" + orjson.dumps({"token": token}).decode())
    while not str(await ws.recv()).startswith("40"):
        pass
    ready.set()
    if stall:
        ws.transport.pause_reading()
        await ws.wait_closed()
        return True
    try:
        async for frame in ws:
            now = time.time()
            if not isinstance(frame, str):
                continue
            if frame.startswith('42["position"'):
                _record(received, frame, now)
            elif frame == "2":
                await ws.send("3")  # Engine.IO PING: PONG
    except Exception:  # the connection ended under us: counted as cut
        return True
    return ws.close_code not in (1000, None)


def measure(received: Received, sends: list[list[Any]], window: tuple[float, float]) -> dict[str, Any]:
    """Each sampled frame counts as shown at the first event of its IMEI at its time or later."""
    delays = []
    missing = 0
    for imei, ts, sent in sends:
        times = received.ts.get(imei)
        if times is None:
            missing += 1
            continue
        index = bisect_left(times, ts)
        if index == len(times):
            missing += 1
        else:
            delays.append(received.arrivals[imei][index] - sent)
    delays.sort()
    start, end = window
    in_window = sum(1 for t in received.arrival_all if start <= t <= end)
    return {"delays": delays, "missing": missing, "events_per_s": in_window / max(end - start, 1e-9)}


async def main() -> None:
    spec = orjson.loads(sys.stdin.buffer.readline())
    loop = asyncio.get_running_loop()
    readers = [Received() for _ in range(spec["clients"])]
    readies = [asyncio.Event() for _ in readers]
    tasks = []
    for received, ready in zip(readers, readies, strict=True):
        if spec["stall"] or spec.get("deflate"):
            run = dashboard(spec["url"], spec["token"], received, stall=spec["stall"], ready=ready)
        else:
            run = lean_dashboard(spec["url"], spec["token"], received, ready=ready)
        tasks.append(asyncio.create_task(run))
        await asyncio.wait_for(ready.wait(), 30)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.buffer.readline)
        command: dict[str, Any] = orjson.loads(line) if line.strip() else {"quit": True}
        if command.get("quit"):
            break
        sends = orjson.loads(open(command["sends_path"], "rb").read())
        start, end = command["window"]
        figures = [measure(received, sends, (start, end)) for received in readers]
        cut = sum(1 for task in tasks if task.done() and task.result())
        with open(command["result_path"], "wb") as out:
            out.write(orjson.dumps({"clients": figures, "cut": cut}))
        for received in readers:
            received.clear()
        sys.stdout.write("done\n")
        sys.stdout.flush()
    for task in tasks:
        task.cancel()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())

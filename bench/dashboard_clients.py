"""Dashboards for the benches, in a process of their own: `python -m bench.dashboard_clients`.

Each dashboard is a raw WebSocket (the `websockets` library) speaking the
Engine.IO 4 / Socket.IO 5 text protocol, signed in with an access token, with
per-message deflate as browsers negotiate it. python-socketio's client costs
several times more CPU per event (its packet objects, a task per event, the
json module): a few processes of it could not keep up with 100 dashboards at
10,000 positions/s on the two cores shared with the server.

A `position` event is read by slicing, not parsed: only its IMEI, its time
and the arrival time are kept, in arrays (16 bytes an event).

Driven over stdin/stdout, one JSON line each way:
- in: {"url", "token", "clients", "stall"}; out: "ready" once all are connected
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
from typing import Any

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


async def dashboard(url: str, token: str, received: Received, *, stall: bool, ready: asyncio.Event) -> bool:
    """Run one dashboard until its connection ends; True when the server cut it."""
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
    ts, arrivals = received.ts, received.arrivals
    try:
        async for frame in ws:
            now = time.time()
            if not isinstance(frame, str):
                continue
            if frame.startswith('42["position"'):
                i = frame.find(_IMEI) + len(_IMEI)
                j = frame.find(_TS, i) + len(_TS)
                imei = frame[i : i + 15]
                if imei not in ts:
                    ts[imei], arrivals[imei] = array("q"), array("d")
                ts[imei].append(_epoch(frame[j : j + 20]))
                arrivals[imei].append(now)
                received.arrival_all.append(now)
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
        tasks.append(
            asyncio.create_task(dashboard(spec["url"], spec["token"], received, stall=spec["stall"], ready=ready))
        )
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

"""A dashboard that reads too slowly is held to a bound, through a real uvicorn server.

The slow dashboard is a raw WebSocket client speaking Engine.IO/Socket.IO that
stops reading its connection; with small kernel buffers on both sides and no
per-message compression (which would shrink these repetitive events tenfold)
the server's writes block after a few tens of kilobytes, as with a stalled tab.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from services.wss.backpressure import positions_coalesced, slow_readers_disconnected
from services.wss.server import tenant_room
from shared.bus.outbox import OutboxRelay
from shared.http import HttpServer
from shared.store import Device
from tests.helpers.api import T0, ApiHarness, Caller, api_harness
from tests.integration.test_wss import Dashboard, eventually, publish_positions
from tests.integration.test_wss import connect as connect_dashboard

QUEUE_LIMIT = 40
DEVICES = 20
# A stalled client never reads the server's closing frame: its close gives up this soon
# (websockets' default, 10 s, was most of a test's time).
CLOSE_TIMEOUT_S = 0.5


@pytest.fixture
async def served(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[ApiHarness, str]]:
    timeout = getattr(request, "param", 1.5)
    async with api_harness(tmp_path, wss_send_queue_limit=QUEUE_LIMIT, wss_slow_reader_timeout=timeout) as api:
        server = HttpServer(api.settings, api.asgi)  # type: ignore[arg-type]
        await server.start()
        try:
            yield api, f"http://127.0.0.1:{server.port}"
        finally:
            await server.close()


class RawDashboard:
    """A Socket.IO client over one WebSocket that can stop reading its connection."""

    def __init__(self, ws: ClientConnection, eio_sid: str):
        self.ws = ws
        self.eio_sid = eio_sid

    @classmethod
    async def connect(cls, url: str, caller: Caller) -> RawDashboard:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a few KB in flight, then the server waits
        sock.setblocking(False)
        host, port = url.removeprefix("http://").split(":")
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        ws = await connect(
            f"ws://{host}:{port}/socket.io/?EIO=4&transport=websocket",
            sock=sock,
            ping_interval=None,
            compression=None,
            close_timeout=CLOSE_TIMEOUT_S,
        )
        opened = await ws.recv()
        assert isinstance(opened, str) and opened.startswith("0")
        await ws.send("40" + orjson.dumps({"token": caller.token}).decode())
        while not str(await ws.recv()).startswith("40"):
            pass
        return cls(ws, orjson.loads(opened[1:])["sid"])

    def stall(self, api: ApiHarness) -> None:
        """Stop reading; and keep the server's kernel from buffering megabytes for us, as a far, slow link soon does."""
        self.ws.transport.pause_reading()
        connection = api.asgi.engineio_server.slow_readers._transports[self.eio_sid]  # the server's side
        connection.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    def resume(self) -> None:
        self.ws.transport.resume_reading()

    async def read_events(self, seconds: float) -> list[tuple[str, Any]]:
        """Read for a while, as a client that caught up; the Socket.IO events received."""
        events = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = await asyncio.wait_for(self.ws.recv(), left)
            except TimeoutError:
                break
            if isinstance(frame, str) and frame.startswith("42"):
                name, data = orjson.loads(frame[2:])
                events.append((name, data))
            elif frame == "2":
                await self.ws.send("3")  # Engine.IO ping: pong
        return events


async def devices(api: ApiHarness, tenant: int) -> list[Device]:
    return [await api.device(tenant, f"35{i:013d}") for i in range(DEVICES)]


async def publish_rounds(api: ApiHarness, fleet: list[Device], rounds: range) -> None:
    for n in rounds:
        await publish_positions(api, *[(device, n + 1, T0 + n) for device in fleet])


def session(api: ApiHarness, eio_sid: str) -> Any:
    return api.asgi.engineio_server.eio.sockets.get(eio_sid)


async def test_a_stalled_dashboard_is_held_to_the_bound_and_cut_while_others_keep_up(
    served: tuple[ApiHarness, str],
) -> None:
    api, url = served
    tenant = await api.tenant()
    fleet = await devices(api, tenant)
    caller = await api.caller(tenant, "viewer")
    healthy: Dashboard = await connect_dashboard(url, caller)
    stalled = await RawDashboard.connect(url, caller)
    stalled.stall(api)
    readers = api.asgi.engineio_server.slow_readers
    disconnected_before = slow_readers_disconnected._value.get()
    try:
        deepest = held_most = 0
        for start in range(0, 100, 10):  # 2,000 positions: far more than the stalled client's buffers hold
            await publish_rounds(api, fleet, range(start, start + 10))
            newest = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(T0 + start + 9))}Z"
            # however far behind the stalled client is, the healthy one hears each batch at once
            await eventually(lambda ts=newest: any(p["ts"] == ts for p in healthy.of("position")), "healthy", timeout=2)
            if (stalled_session := session(api, stalled.eio_sid)) is not None:
                deepest = max(deepest, stalled_session.queue.qsize())
                held_most = max(held_most, readers.held(stalled.eio_sid))
        assert readers.held(stalled.eio_sid) or session(api, stalled.eio_sid) is None  # it did fall behind
        assert held_most <= DEVICES and 0 < deepest <= QUEUE_LIMIT  # bounded: the queue, then a device's newest
        assert len(healthy.of("position")) == 100 * DEVICES  # the healthy client missed nothing

        await eventually(lambda: session(api, stalled.eio_sid) is None, "the stalled session's end", timeout=5)
        assert slow_readers_disconnected._value.get() == disconnected_before + 1
        assert readers.held(stalled.eio_sid) == 0
        assert healthy.client.connected
    finally:
        await healthy.client.disconnect()
        await stalled.ws.close()


@pytest.mark.parametrize("served", [30.0], indirect=True)  # never behind long enough to be cut
async def test_a_slow_dashboard_gets_each_devices_newest_position_and_every_alert(
    served: tuple[ApiHarness, str],
) -> None:
    api, url = served
    tenant = await api.tenant()
    fleet = await devices(api, tenant)
    slow = await RawDashboard.connect(url, await api.caller(tenant, "viewer"))
    slow.stall(api)
    coalesced_before = positions_coalesced._value.get()
    try:
        await publish_rounds(api, fleet, range(0, 200))  # 4,000 positions while it does not read
        readers = api.asgi.engineio_server.slow_readers
        assert readers.held(slow.eio_sid) == DEVICES  # behind: one position per device waits
        alert = await api.alert(fleet[3])
        await OutboxRelay(api.store, api.bus).relay_once()
        await publish_rounds(api, fleet, range(200, 210))

        slow.resume()
        events = await slow.read_events(2.0)  # it reads again
        alerts = [data for name, data in events if name == "alert"]
        assert [a["id"] for a in alerts] == [alert.id]
        newest = {}
        for name, data in events:
            if name == "position":
                assert data["ts"] >= newest.get(data["imei"], "")  # each device's positions in order
                newest[data["imei"]] = data["ts"]
        last = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(T0 + 209))}Z"
        assert newest == {device.imei: last for device in fleet}  # each device's newest arrived
        assert len([name for name, _ in events if name == "position"]) < 210 * DEVICES  # not all of them
        assert positions_coalesced._value.get() > coalesced_before
        assert readers.held(slow.eio_sid) == 0 and session(api, slow.eio_sid) is not None  # caught up, still on
    finally:
        await slow.ws.close()


async def test_positions_emitted_through_python_socketio_are_bounded_too(served: tuple[ApiHarness, str]) -> None:
    # A distributed deployment's pub/sub manager delivers through python-socketio's emit, not `_send_local`.
    api, url = served
    tenant = await api.tenant()
    stalled = await RawDashboard.connect(url, await api.caller(tenant, "viewer"))
    stalled.stall(api)
    sio = api.asgi.engineio_server
    try:
        deepest = 0
        for n in range(2000):
            position = {"imei": f"35{n % DEVICES:013d}", "ts": f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z"}
            await sio.emit("position", position, to=tenant_room(tenant))
            if (stalled_session := session(api, stalled.eio_sid)) is not None:
                deepest = max(deepest, stalled_session.queue.qsize())
        assert 0 < deepest <= QUEUE_LIMIT
        assert 0 < sio.slow_readers.held(stalled.eio_sid) <= DEVICES or session(api, stalled.eio_sid) is None
    finally:
        await stalled.ws.close()

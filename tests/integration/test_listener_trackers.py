"""A tracker protocol's port in the all-in-one solewatch, over real TCP (CONTRACT §10).

The protocol is tests/helpers/fake_tracker.py, plugged in through
shared.protocols.registry as a real codec package is: what is tested is the
plumbing every tracker protocol shares (its port, logins by protocol,
acknowledgements after durability, positions and alarms through the API and
alerting, a battery not reported, commands it cannot carry).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from services.api import create_app
from services.authn.tokens import start_session
from services.components import embedded_runtime
from services.context import ServiceContext
from services.listener.server import Listener
from shared.bus.memory import MemoryBus
from shared.cache.memory import MemoryCache
from shared.protocols import registry
from shared.protocols.tracker import BATTERY_UNKNOWN
from shared.protocols.xsole import Login, LoginAck
from shared.runtime import Runtime
from shared.store import Store
from tests.conftest import embedded_settings
from tests.helpers.api import JWT_SECRET
from tests.helpers.fake_tracker import NAME, NO, OK, FakeDevice, FakeSession
from tests.helpers.stored import count_stored
from tests.helpers.xsole_client import XSoleTestClient

IMEI = "864035051234567"
XSOLE_IMEI = "356307042441013"
LAT, LON = 436163000, 70553000


class Tracker:
    """A fake-protocol device on a real TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, imei: str):
        self.reader, self.writer, self.device = reader, writer, FakeDevice(imei)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def position(self, ts: int, battery: int, lat_e7: int = LAT) -> bytes:
        return self.device.position(ts=ts, lat_e7=lat_e7, lon_e7=LON, speed_cms=0, course_ddeg=0, battery=battery)

    async def line(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), timeout)

    async def until_closed(self, timeout: float = 5.0) -> bytes:
        """Everything the server sent until it closed the connection."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def close(self) -> None:
        self.writer.close()


@dataclass
class Solewatch:
    listener: Listener
    http: httpx.AsyncClient
    headers: dict[str, str]
    tenant_id: int

    @property
    def store(self) -> Store:
        return self.listener.store

    async def connect(self, imei: str = IMEI) -> Tracker:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.listener.tracker_port(NAME))
        return Tracker(reader, writer, imei)

    async def logged_in(self, imei: str = IMEI) -> Tracker:
        tracker = await self.connect(imei)
        await tracker.send(tracker.device.login())
        assert await tracker.line() == OK
        return tracker

    async def register(self, imei: str = IMEI, protocol: str = NAME, **extra: Any) -> httpx.Response:
        body = {"imei": imei, "name": "Night guard", "protocol": protocol, **extra}
        response = await self.http.post("/api/v1/devices", headers=self.headers, json=body)
        assert response.status_code == 201, response.text
        return response

    async def get(self, path: str) -> Any:
        response = await self.http.get(path, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def solewatch(tmp_path: Path) -> AsyncIterator[Solewatch]:
    registry.register(NAME, FakeSession, FakeDevice)
    settings = embedded_settings(tmp_path / "data", jwt_secret=JWT_SECRET)
    runtime, listener = embedded_runtime(settings, lambda: settings)
    listener.tracker_ports[NAME] = 0  # any free port: the way a SOLEWATCH_<NAME>_PORT opens one
    await runtime.start()
    try:
        # The API over the same store, its commands going to this listener (as in `solewatch run`).
        context = ServiceContext(
            settings=settings, store=listener.store, cache=MemoryCache(), bus=MemoryBus(), commands=listener
        )
        app = create_app(context, Runtime([], lambda: settings)).other_asgi_app
        tenant_id = await listener.store.ensure_tenant("default")
        user = await listener.store.create_user(
            tenant_id=tenant_id, email="admin@t.example", password_hash="unused", role="admin"
        )
        session = await start_session(settings, context.cache, user)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as http:
            yield Solewatch(listener, http, {"Authorization": f"Bearer {session.access_token}"}, tenant_id)
    finally:
        await runtime.shutdown()
        registry.unregister(NAME)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


def sample(name: str, **labels: str) -> float:
    """A metric's value now (the registry is process-wide: tests compare before and after)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def stored(solewatch: Solewatch, imei: str) -> dict[str, int]:
    device = await solewatch.store.device_by_imei(imei)
    assert device is not None
    return await count_stored(solewatch.store, device.id)


# -- registering, logging in, streaming ----------------------------------------------------------


async def test_positions_of_a_tracker_are_acknowledged_once_stored_and_shown_by_the_api(solewatch):
    registered = (await solewatch.register(model="Fake Tracker 1")).json()
    assert "token" not in registered and registered["protocol"] == NAME and registered["model"] == "Fake Tracker 1"
    tracker = await solewatch.logged_in()
    now = int(time.time())
    for n in range(3):
        packet = tracker.device.position(
            ts=now - 30 + n * 10, lat_e7=LAT + n, lon_e7=LON, speed_cms=500, course_ddeg=0, battery=80 - n
        )
        await tracker.send(packet)
    assert [await tracker.line() for _ in range(3)] == [OK] * 3
    # Acknowledged means durable: stored before the OK went out.
    assert (await stored(solewatch, IMEI))["positions"] == 3

    positions = (await solewatch.get(f"/api/v1/devices/{IMEI}/positions"))["items"]
    assert [(p["lat"], p["speed"], p["battery"]) for p in positions] == [
        (LAT / 1e7, 5.0, 80),
        ((LAT + 1) / 1e7, 5.0, 79),
        ((LAT + 2) / 1e7, 5.0, 78),
    ]
    device = await solewatch.get(f"/api/v1/devices/{IMEI}")
    assert (device["protocol"], device["model"], device["battery"]) == (NAME, "Fake Tracker 1", 78)
    await tracker.close()


async def test_an_sos_from_a_tracker_raises_an_sos_alert(solewatch):
    await solewatch.register()
    tracker = await solewatch.logged_in()
    sos = tracker.device.alarm(1, ts=int(time.time()) - 5, lat_e7=LAT, lon_e7=LON, battery=BATTERY_UNKNOWN)
    await tracker.send(sos)
    assert await tracker.line() == OK

    alerts = await eventually(lambda: solewatch.store.alerts(solewatch.tenant_id))
    assert [(a.kind, a.imei, a.battery) for a in alerts] == [("sos", IMEI, None)]
    await tracker.close()


async def test_a_packet_without_a_battery_leaves_the_last_known_level(solewatch):
    await solewatch.register()
    tracker = await solewatch.logged_in()
    now = int(time.time())
    await tracker.send(tracker.position(now - 20, battery=60))
    await tracker.send(tracker.position(now - 10, battery=BATTERY_UNKNOWN))
    await tracker.send(tracker.device.heartbeat(ts=now, battery=BATTERY_UNKNOWN))
    assert [await tracker.line() for _ in range(3)] == [OK] * 3

    assert (await solewatch.get(f"/api/v1/devices/{IMEI}"))["battery"] == 60
    positions = (await solewatch.get(f"/api/v1/devices/{IMEI}/positions"))["items"]
    assert [p["battery"] for p in positions] == [60, None]
    heartbeats = (await solewatch.get(f"/api/v1/devices/{IMEI}/heartbeats"))["items"]
    assert [h["battery"] for h in heartbeats] == [None]
    await tracker.close()


async def test_a_battery_never_reported_raises_no_low_battery_alert(solewatch):
    await solewatch.register()
    tracker = await solewatch.logged_in()
    now = int(time.time())
    await tracker.send(tracker.position(now - 20, battery=BATTERY_UNKNOWN))
    await tracker.send(tracker.device.heartbeat(ts=now - 10, battery=BATTERY_UNKNOWN))
    assert [await tracker.line() for _ in range(2)] == [OK] * 2
    # An SOS after them: once its alert is there, the telemetry before it was seen by detection.
    await tracker.send(tracker.device.alarm(1, ts=now, lat_e7=LAT, lon_e7=LON, battery=BATTERY_UNKNOWN))
    assert await tracker.line() == OK
    await eventually(lambda: solewatch.store.alerts(solewatch.tenant_id))
    await asyncio.sleep(0.5)  # a low_battery detection would have followed the same telemetry message by now

    assert [a.kind for a in await solewatch.store.alerts(solewatch.tenant_id)] == ["sos"]
    assert (await solewatch.get(f"/api/v1/devices/{IMEI}"))["battery"] is None
    await tracker.close()


async def test_a_low_battery_reported_by_a_tracker_raises_low_battery(solewatch):
    # The same path as above, with a level: the test above could not pass by detection being off.
    await solewatch.register()
    tracker = await solewatch.logged_in()
    await tracker.send(tracker.position(int(time.time()), battery=5))
    assert await tracker.line() == OK
    alerts = await eventually(lambda: solewatch.store.alerts(solewatch.tenant_id))
    assert [(a.kind, a.battery) for a in alerts] == [("low_battery", 5)]
    await tracker.close()


async def test_a_position_out_of_range_is_dropped_counted_and_its_packet_still_acknowledged(solewatch):
    rejected_before = sample("listener_frames_rejected_total", protocol=NAME)
    await solewatch.register()
    tracker = await solewatch.logged_in()
    await tracker.send(tracker.position(int(time.time()), battery=50, lat_e7=95 * 10**7))  # 95° north
    assert await tracker.line() == OK  # or the device would send it forever

    assert sample("listener_frames_rejected_total", protocol=NAME) == rejected_before + 1
    assert (await stored(solewatch, IMEI))["positions"] == 0
    await tracker.close()


# -- refused logins ------------------------------------------------------------------------------


async def test_an_xsole_device_is_refused_on_a_tracker_port_and_nothing_is_stored(solewatch):
    refused_before = sample("listener_logins_total", protocol=NAME, result="unknown_device")
    await solewatch.register(XSOLE_IMEI, protocol="xsole")
    tracker = await solewatch.connect(XSOLE_IMEI)
    now = int(time.time())
    position = tracker.device.position(ts=now, lat_e7=LAT, lon_e7=LON, speed_cms=0, course_ddeg=0, battery=50)
    await tracker.send(tracker.device.login() + position)  # a position glued behind must not slip in

    assert await tracker.until_closed() == NO
    assert (await stored(solewatch, XSOLE_IMEI))["positions"] == 0
    assert sample("listener_logins_total", protocol=NAME, result="unknown_device") == refused_before + 1


async def test_a_tracker_is_refused_on_the_xsole_port_and_nothing_is_stored(solewatch):
    await solewatch.register()
    insole = await XSoleTestClient.connect("127.0.0.1", solewatch.listener.port)
    await insole.send(Login(7, IMEI, 0x0102, bytes(16)), insole.position())

    frames = await insole.frames_until_closed()

    assert [(type(f), f.seq, f.status) for f in frames] == [(LoginAck, 7, 1)]  # as an unknown device
    assert (await stored(solewatch, IMEI))["positions"] == 0


async def test_an_unregistered_tracker_is_refused(solewatch):
    tracker = await solewatch.connect()
    await tracker.send(tracker.device.login())
    assert await tracker.until_closed() == NO


async def test_a_retired_tracker_is_refused(solewatch):
    await solewatch.register()
    response = await solewatch.http.delete(f"/api/v1/devices/{IMEI}", headers=solewatch.headers)
    assert response.status_code == 204
    tracker = await solewatch.connect()
    await tracker.send(tracker.device.login())
    assert await tracker.until_closed() == NO


async def test_a_disabled_tracker_is_refused(solewatch):
    await solewatch.register()
    response = await solewatch.http.patch(f"/api/v1/devices/{IMEI}", headers=solewatch.headers, json={"enabled": False})
    assert response.status_code == 200, response.text
    tracker = await solewatch.connect()
    await tracker.send(tracker.device.login())
    assert await tracker.until_closed() == NO


async def test_garbage_on_a_tracker_port_is_counted_and_closes_the_connection_after_too_much(solewatch):
    bad_before = sample("listener_bad_frames_total", protocol=NAME)
    await solewatch.register()
    tracker = await solewatch.logged_in()
    await tracker.send(b"what is this\n" * 10)
    assert await tracker.until_closed() == b""
    assert sample("listener_bad_frames_total", protocol=NAME) == bad_before + 10


# -- commands ----------------------------------------------------------------------------------


async def test_a_command_the_protocol_cannot_carry_ends_unsupported_at_once(solewatch):
    await solewatch.register()
    endpoint = await solewatch.store.add_webhook_endpoint(
        tenant_id=solewatch.tenant_id,
        url="https://hooks.example/solewatch",
        events=["command.completed"],
        description=None,
        secret="s" * 32,
    )
    tracker = await solewatch.logged_in()
    response = await solewatch.http.post(
        f"/api/v1/devices/{IMEI}/commands", headers=solewatch.headers, json={"command": "vibrate"}
    )
    assert response.status_code == 202, response.text

    async def finished() -> list[dict[str, Any]]:
        items = (await solewatch.get(f"/api/v1/devices/{IMEI}/commands"))["items"]
        return [item for item in items if item["status"] != "queued" and item["status"] != "sent"]

    [command] = await eventually(finished)
    assert command["command"] == "vibrate" and command["status"] == "unsupported"
    assert command["completed_at"] is not None
    deliveries = await solewatch.store.webhook_deliveries(solewatch.tenant_id, endpoint.id)
    assert [d.type for d in deliveries] == ["command.completed"]
    # Nothing went to the device, and its connection goes on.
    await tracker.send(tracker.device.heartbeat(ts=int(time.time()), battery=50))
    assert await tracker.line() == OK
    await tracker.close()


async def test_a_command_the_protocol_carries_goes_out_in_its_bytes(solewatch):
    await solewatch.register()
    tracker = await solewatch.logged_in()
    response = await solewatch.http.post(
        f"/api/v1/devices/{IMEI}/commands", headers=solewatch.headers, json={"command": "locate-now"}
    )
    assert response.status_code == 202, response.text
    [received] = tracker.device.feed(await tracker.line())
    assert received.kind == "command" and received.data.startswith(b"LOCATE,")
    await tracker.close()

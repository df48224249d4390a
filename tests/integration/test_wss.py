"""Live updates over Socket.IO, through a real uvicorn server and the python-socketio client.

Bus messages are published on the MemoryBus in their real formats: telemetry
built by IngestBatch.from_events + telemetry_message, alerts relayed from the store's
outbox, device status as the listener writes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import socketio  # type: ignore[import-untyped]

from services.authn.tokens import decode_access_token, revoke_session
from services.wss import server as wss_server
from services.wss.server import LiveUpdates
from shared.bus import Message
from shared.bus.memory import handler_failures
from shared.bus.outbox import OutboxRelay
from shared.bus.topics import TOPIC_TELEMETRY
from shared.http import HttpServer
from shared.store import Device, FrameRecord
from shared.store.batch import IngestBatch
from shared.store.messages import telemetry_message
from tests.helpers.api import T0, ApiHarness, Caller, api_harness, position

IMEI_A = "356307042441013"
IMEI_B = "490154203237518"


class Dashboard:
    """A Socket.IO client recording every live event."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        for name in ("position", "alert", "device_status"):
            self.client.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[[Any], Awaitable[None]]:
        async def record(data: Any) -> None:
            self.events.append((name, data))

        return record

    def of(self, name: str) -> list[Any]:
        return [data for event, data in self.events if event == name]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ApiHarness, str]]:
    async with api_harness(tmp_path) as api:
        server = HttpServer(api.settings, api.asgi)  # type: ignore[arg-type]
        await server.start()
        try:
            yield api, f"http://127.0.0.1:{server.port}"
        finally:
            await server.close()


async def connect(url: str, caller: Caller) -> Dashboard:
    dashboard = Dashboard()
    await dashboard.client.connect(url, auth={"token": caller.token}, socketio_path="socket.io", wait_timeout=5)
    return dashboard


async def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def publish_positions(api: ApiHarness, *frames: tuple[Device, int, int]) -> None:
    records = [
        FrameRecord(device.id, device.tenant_id, device.imei, position(seq, ts, speed_cms=250), time.time())
        for device, seq, ts in frames
    ]
    payload = telemetry_message(IngestBatch.from_events(records))
    assert payload is not None
    await api.bus.publish(TOPIC_TELEMETRY, payload, message_id=f"test-{time.time_ns()}")


@pytest.mark.parametrize("auth", [None, {}, {"token": ""}, {"token": "junk"}, {"token": 42}, "token"])
async def test_a_client_without_a_valid_token_is_refused(served: tuple[ApiHarness, str], auth: Any) -> None:
    _, url = served
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth=auth, socketio_path="socket.io", wait_timeout=5)
    assert not client.connected


async def test_a_logged_out_session_is_refused(served: tuple[ApiHarness, str]) -> None:
    api, url = served
    caller = await api.caller(await api.tenant(), "viewer")
    await revoke_session(api.settings, api.cache, decode_access_token(api.settings, caller.token).session_id)
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth={"token": caller.token}, socketio_path="socket.io", wait_timeout=5)


async def test_each_tenant_hears_only_its_own_events(served: tuple[ApiHarness, str]) -> None:
    api, url = served
    tenant_a, tenant_b = await api.tenant(), await api.tenant()
    device_a, device_b = await api.device(tenant_a, IMEI_A), await api.device(tenant_b, IMEI_B)
    supervisor_a = await api.caller(tenant_a, "supervisor")
    live_a, live_b = await connect(url, supervisor_a), await connect(url, await api.caller(tenant_b, "viewer"))
    try:
        # positions: telemetry messages mixing both tenants' devices (each carries a device's newest)
        await publish_positions(api, (device_a, 2, T0), (device_b, 2, T0 + 1))
        await publish_positions(api, (device_a, 3, T0 + 2))
        await eventually(lambda: len(live_a.of("position")) == 2 and len(live_b.of("position")) == 1, "positions")
        assert live_a.of("position") == [
            {
                "imei": IMEI_A,
                "ts": "2026-01-01T00:00:00Z",
                "lat": 43.6163,
                "lon": 7.0553,
                "speed": 2.5,
                "course": 270.5,
                "battery": 87,
            },
            {
                "imei": IMEI_A,
                "ts": "2026-01-01T00:00:02Z",
                "lat": 43.6163,
                "lon": 7.0553,
                "speed": 2.5,
                "course": 270.5,
                "battery": 87,
            },
        ]
        assert [p["imei"] for p in live_b.of("position")] == [IMEI_B]

        # alerts: created, then acknowledged through the REST API, relayed from the outbox
        alert = await api.alert(device_a)
        relay = OutboxRelay(api.store, api.bus)
        await relay.relay_once()
        acked = await api.http.post(f"/api/v1/alerts/{alert.id}/ack", headers=supervisor_a.headers)
        assert acked.status_code == 200
        await relay.relay_once()
        await eventually(lambda: len(live_a.of("alert")) == 2, "alert events")
        created, acknowledged = live_a.of("alert")
        assert created["id"] == alert.id and created["status"] == "open" and created["imei"] == IMEI_A
        assert acknowledged == acked.json()

        # device status, as the listener publishes it
        for device, online in ((device_a, True), (device_b, False)):
            status = {
                "tenant_id": device.tenant_id,
                "imei": device.imei,
                "online": online,
                "battery": 87,
                "last_seen": "2026-01-01T00:00:02Z",
            }
            await api.bus.publish("device_status", orjson.dumps(status), message_id=f"status-{device.id}")
        await eventually(lambda: bool(live_a.of("device_status") and live_b.of("device_status")), "device status")
        assert live_a.of("device_status") == [
            {"imei": IMEI_A, "online": True, "battery": 87, "last_seen": "2026-01-01T00:00:02Z"}
        ]
        assert live_b.of("device_status") == [
            {"imei": IMEI_B, "online": False, "battery": 87, "last_seen": "2026-01-01T00:00:02Z"}
        ]

        await asyncio.sleep(0.1)  # anything misrouted would have arrived by now
        assert live_b.of("alert") == []
        assert [p["imei"] for p in live_b.of("position")] == [IMEI_B]
        assert len(live_a.of("position")) == 2 and len(live_a.of("device_status")) == 1
    finally:
        await live_a.client.disconnect()
        await live_b.client.disconnect()


async def test_nobody_watching_costs_no_parsing(served: tuple[ApiHarness, str]) -> None:
    api, _ = served
    sio = socketio.AsyncServer(async_mode="asgi")
    live = LiveUpdates(api.context, sio, consumer="probe")
    # Not even valid JSON: with no client connected it must not be read at all.
    await live.on_telemetry(Message(TOPIC_TELEMETRY, b"\x00not json", "m-1"))
    await live.on_alert(Message("alert", b'{"tenant_id": 1, "alert": {}}', "m-2"))


@pytest.mark.parametrize("failure", ["raises", "hangs"])
async def test_a_failing_emit_is_dropped_without_holding_the_bus(
    served: tuple[ApiHarness, str],
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    api, url = served
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI_A)
    dashboard = await connect(url, await api.caller(tenant, "viewer"))
    calls = 0

    async def broken_emit(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if failure == "hangs":
            await asyncio.Event().wait()
        raise RuntimeError("transport gone")

    def broken_send(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("transport gone")

    monkeypatch.setattr(wss_server, "EMIT_TIMEOUT_S", 0.2)
    # Positions go out through engine.io directly (one encode per event), the rest through emit.
    sio = api.asgi.engineio_server
    monkeypatch.setattr(sio, "emit", broken_emit)
    if failure == "hangs":  # only awaiting engine.io can hang: a server without the slow-reader bound
        monkeypatch.setattr(sio, "slow_readers", None)
        monkeypatch.setattr(sio.eio, "send_packet", broken_emit)
    else:
        monkeypatch.setattr(sio.slow_readers, "send_position", broken_send)
    failures_before = handler_failures.labels("wss-positions")._value.get()
    try:
        started = time.monotonic()
        await publish_positions(api, (device, 2, T0))
        assert time.monotonic() - started < 1.0 and calls == 1
        # Live events are best effort: the bus saw no failure, so it retries nothing.
        assert handler_failures.labels("wss-positions")._value.get() == failures_before
    finally:
        monkeypatch.undo()
        await dashboard.client.disconnect()


async def test_logging_out_ends_the_live_socket_of_that_session(
    served: tuple[ApiHarness, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wss_server, "SESSION_CHECK_S", 0.1)
    api, url = served
    tenant = await api.tenant()
    signed_out, still_in = await api.caller(tenant, "viewer"), await api.caller(tenant, "viewer")
    ended_dashboard = await connect(url, signed_out)
    kept_dashboard = await connect(url, still_in)

    await revoke_session(api.settings, api.cache, decode_access_token(api.settings, signed_out.token).session_id)

    await eventually(lambda: not ended_dashboard.client.connected, "the signed-out socket to be closed", timeout=15)
    assert kept_dashboard.client.connected
    await kept_dashboard.client.disconnect()

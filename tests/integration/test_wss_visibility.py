"""Location visibility on Socket.IO (CONTRACT §8), through a real uvicorn server over both storage
adapters: a `position` event goes only where the tenant's mode shows it, an alert opening the
window 15 minutes back; under `always` nothing changes and a thousand positions cost one lookup."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.visibility.policy import ALERT_LEAD_S
from shared.alerts import alert_to_api
from shared.bus.topics import TOPIC_ALERT
from shared.http import HttpServer
from shared.store import Device
from shared.store.device_settings import DeviceSettings
from shared.store.tenant_settings import LocationVisibility, TenantSettings
from tests.helpers.api import STORE_ADAPTERS, ApiHarness, api_harness
from tests.integration.test_wss import Dashboard, connect, eventually, publish_positions

HOUR = 3600


@pytest.fixture(params=STORE_ADAPTERS)
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[ApiHarness, str]]:
    async with api_harness(tmp_path, adapter=request.param) as api:
        server = HttpServer(api.settings, api.asgi)  # type: ignore[arg-type]
        await server.start()
        try:
            yield api, f"http://127.0.0.1:{server.port}"
        finally:
            await server.close()


async def watched_worker(
    api: ApiHarness, url: str, mode: LocationVisibility, shift: dict[str, Any] | None = None
) -> tuple[Device, Dashboard]:
    tenant = await api.tenant()
    await api.store.set_tenant_settings(tenant, TenantSettings(location_visibility=mode))
    device = await api.device(tenant)
    if shift is not None:
        await api.store.set_device_settings(device.id, DeviceSettings(shift=shift))
    return device, await connect(url, await api.caller(tenant, "viewer"))


def times_heard(dashboard: Dashboard) -> list[str]:
    return [event["ts"] for event in dashboard.of("position")]


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def test_alerts_only_sends_positions_only_inside_an_alerts_window(served: tuple[ApiHarness, str]) -> None:
    api, url = served
    device, hidden = await watched_worker(api, url, "alerts_only")
    other, shown = await watched_worker(api, url, "always")
    try:
        now = int(time.time())
        await publish_positions(api, (device, 1, now - 3600), (other, 1, now - 3600))
        await eventually(lambda: len(shown.of("position")) == 1, "the always tenant's position")

        alert = await api.alert(device, ts=now)  # an SOS now: its window opens 15 minutes back
        # Socket.IO hears of it as the outbox relays it, and asks the store again for that tenant's devices
        announced = {"event": "created", "tenant_id": device.tenant_id, "alert": alert_to_api(alert)}
        await api.bus.publish(TOPIC_ALERT, orjson.dumps(announced), message_id=f"alert-{alert.id}")
        await eventually(lambda: len(hidden.of("alert")) == 1, "the alert")
        before = now - ALERT_LEAD_S
        await publish_positions(api, (device, 2, before - 1))
        await publish_positions(api, (device, 3, before))
        await publish_positions(api, (device, 4, now + 5))
        await publish_positions(api, (other, 2, now))
        await eventually(lambda: len(shown.of("position")) == 2, "the always tenant's second position")
        await eventually(lambda: len(hidden.of("position")) == 2, "the positions in the alert's window")
        assert times_heard(hidden) == [iso(before), iso(now + 5)]
        assert times_heard(shown) == [iso(now - 3600), iso(now)]
    finally:
        await hidden.client.disconnect()
        await shown.client.disconnect()


async def test_on_shift_sends_the_shift_hours_only(served: tuple[ApiHarness, str]) -> None:
    api, url = served
    now = int(time.time())
    hour = time.gmtime(now).tm_hour
    shift = {"hours": [[hour, (hour + 1) % 24]], "timezone": "UTC"}  # the hour we are in
    device, dashboard = await watched_worker(api, url, "on_shift", shift)
    try:
        top = now - now % HOUR
        await publish_positions(api, (device, 1, top - 1))
        await publish_positions(api, (device, 2, top))
        await publish_positions(api, (device, 3, top + HOUR))
        await publish_positions(api, (device, 4, top + HOUR - 1))
        await eventually(lambda: len(dashboard.of("position")) >= 2, "the positions on shift")
        await publish_positions(api, (device, 5, top + HOUR - 1))  # a marker: everything before it was handled
        await eventually(lambda: len(dashboard.of("position")) == 3, "the marker")
        assert times_heard(dashboard) == [iso(top), iso(top + HOUR - 1), iso(top + HOUR - 1)]
    finally:
        await dashboard.client.disconnect()


async def test_under_always_a_thousand_positions_cost_one_lookup(served: tuple[ApiHarness, str]) -> None:
    api, url = served
    device, dashboard = await watched_worker(api, url, "always")
    reads = {"tenant_settings": 0, "alerts_overlapping": 0, "device_settings": 0}
    for name in reads:
        real = getattr(api.store, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            reads[_name] += 1
            return _real(*args, **kwargs)

        setattr(api.store, name, counted)  # counting the store reads behind the live events
    try:
        now = int(time.time())
        for n in range(1000):
            await publish_positions(api, (device, n + 1, now + n))
        await eventually(lambda: len(dashboard.of("position")) == 1000, "every position", timeout=20)
        assert reads == {"tenant_settings": 1, "alerts_overlapping": 0, "device_settings": 0}
    finally:
        await dashboard.client.disconnect()

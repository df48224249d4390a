"""Location visibility through the REST API (CONTRACT §8) over both storage adapters: positions
and `last_position` inside the windows the tenant's mode allows and absent outside, an alert
opening its window 15 minutes back, `always` unchanged, the admin's export whole."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from datetime import datetime
from typing import Any

import orjson
import pytest

from services.visibility.policy import ALERT_LEAD_S
from shared.store import Device
from shared.store.device_settings import DeviceSettings
from shared.store.tenant_settings import LocationVisibility, TenantSettings
from tests.helpers.api import T0, ApiHarness, Caller, position

HOUR = 3600


@pytest.fixture
async def api(harness: ApiHarness) -> ApiHarness:
    return harness  # once per storage adapter


async def worker(
    api: ApiHarness, mode: LocationVisibility, shift: dict[str, Any] | None = None
) -> tuple[Device, Caller]:
    """A device of a new tenant under that mode, and a supervisor of that tenant (set before any read:
    the gate keeps a mode for a few seconds)."""
    tenant = await api.tenant()
    await api.store.set_tenant_settings(tenant, TenantSettings(location_visibility=mode))
    device = await api.device(tenant)
    if shift is not None:
        await api.store.set_device_settings(device.id, DeviceSettings(shift=shift))
    return device, await api.caller(tenant, "supervisor")


async def walk(api: ApiHarness, caller: Caller, device: Device, **params: Any) -> list[int]:
    """Every position's device time, following the cursor to the end."""
    seen: list[int] = []
    cursor = None
    for _ in range(1000):
        query = params | ({"cursor": cursor} if cursor else {})
        page = await api.http.get(f"/api/v1/devices/{device.imei}/positions", headers=caller.headers, params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [int(_unix(item["ts"])) for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the cursor never ended")


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def last_position(api: ApiHarness, caller: Caller, device: Device) -> Any:
    one = await api.http.get(f"/api/v1/devices/{device.imei}", headers=caller.headers)
    listed = await api.http.get("/api/v1/devices", headers=caller.headers)
    assert one.status_code == listed.status_code == 200
    [item] = [d for d in listed.json()["items"] if d["imei"] == device.imei]
    assert item["last_position"] == one.json()["last_position"]
    return one.json()["last_position"]


async def test_always_shows_every_position_and_the_last_one(api: ApiHarness) -> None:
    device, caller = await worker(api, "always")
    times = [T0 + n * 600 for n in range(30)]
    await api.store_positions(device, [position(n + 1, ts) for n, ts in enumerate(times)])
    assert await walk(api, caller, device, limit=7) == times
    assert (await last_position(api, caller, device))["ts"] == "2026-01-01T04:50:00Z"


async def test_alerts_only_shows_from_15_minutes_before_an_alert_until_it_is_resolved(api: ApiHarness) -> None:
    device, caller = await worker(api, "alerts_only")
    now = int(time.time())
    base = now - 2 * HOUR
    times = [base + n * 60 for n in range(4 * 60)]  # every minute, from two hours ago to two hours ahead
    await api.store_positions(device, [position(n + 1, ts) for n, ts in enumerate(times)])
    assert await walk(api, caller, device) == []
    assert await last_position(api, caller, device) is None

    raised = base + HOUR
    alert = await api.alert(device, ts=raised)
    resolved = await api.store.resolve_alert(device.tenant_id, alert.id, by="test")
    assert resolved is not None and resolved.resolved_at is not None
    api.context.positions.forget_alerts(device.tenant_id)  # (pages read the store's alerts every time anyway)

    expected = [ts for ts in times if raised - ALERT_LEAD_S <= ts <= resolved.resolved_at]
    assert expected[0] == raised - ALERT_LEAD_S and expected[-1] <= now + 1
    assert await walk(api, caller, device, limit=25) == expected
    assert await walk(api, caller, device, limit=1000) == expected
    # the last fix is two hours ahead, after the resolution: still hidden
    assert await last_position(api, caller, device) is None


async def test_an_open_alert_keeps_showing_and_shows_the_last_position(api: ApiHarness) -> None:
    device, caller = await worker(api, "alerts_only")
    times = [T0 + n * 300 for n in range(24)]  # two hours
    await api.store_positions(device, [position(n + 1, ts) for n, ts in enumerate(times)])
    await api.alert(device, ts=T0 + HOUR)
    assert await walk(api, caller, device) == [ts for ts in times if ts >= T0 + HOUR - ALERT_LEAD_S]
    assert (await last_position(api, caller, device))["ts"] == "2026-01-01T01:55:00Z"
    # the alert keeps its location whatever the mode
    alerts = await api.http.get("/api/v1/alerts", headers=caller.headers)
    assert [(a["lat"], a["lon"]) for a in alerts.json()["items"]] == [(43.6163, 7.0553)]


async def test_on_shift_shows_the_shift_hours_and_alerts(api: ApiHarness) -> None:
    device, caller = await worker(api, "on_shift", {"hours": [[8, 17]], "timezone": "Europe/Paris"})
    times = [T0 + n * 900 for n in range(4 * 24)]  # every quarter of an hour on 1 January (UTC+1 in Paris)
    await api.store_positions(device, [position(n + 1, ts) for n, ts in enumerate(times)])
    on_shift = [ts for ts in times if T0 + 7 * HOUR <= ts < T0 + 16 * HOUR]
    assert await walk(api, caller, device, limit=10) == on_shift
    assert await last_position(api, caller, device) is None  # 23:45 UTC is 00:45 in Paris

    await api.alert(device, ts=T0 + 2 * HOUR)  # at night, still open
    assert await walk(api, caller, device, limit=10) == [ts for ts in times if ts >= T0 + 2 * HOUR - ALERT_LEAD_S]
    assert await last_position(api, caller, device) is not None


async def test_on_shift_without_shift_hours_shows_nothing_but_alerts(api: ApiHarness) -> None:
    device, caller = await worker(api, "on_shift")
    await api.store_positions(device, [position(n + 1, T0 + n * HOUR) for n in range(24)])
    assert await walk(api, caller, device) == []
    assert await last_position(api, caller, device) is None


async def test_a_long_hidden_stretch_pages_on_to_what_follows(api: ApiHarness) -> None:
    device, caller = await worker(api, "alerts_only")
    times = [T0 + n * 10 for n in range(600)]
    await api.store_positions(device, [position(n + 1, ts) for n, ts in enumerate(times)])
    await api.alert(device, ts=times[-1] - 60 + ALERT_LEAD_S)  # shows the last 7 positions only
    # 5 positions a page: the 593 hidden ones take more than one page's reads, and the walk still ends right
    assert await walk(api, caller, device, limit=5) == times[-7:]


async def test_since_and_until_and_the_csv_export_read_are_filtered_too(api: ApiHarness) -> None:
    device, caller = await worker(api, "alerts_only")
    times = [T0 + n * 60 for n in range(120)]
    await api.store_positions(device, [position(n + 1, ts) for n, ts in enumerate(times)])
    await api.alert(device, ts=T0 + HOUR)
    since, until = "2026-01-01T00:30:00Z", "2026-01-01T01:10:00Z"
    got = await walk(api, caller, device, since=since, until=until, export="csv")
    assert got == [ts for ts in times if T0 + HOUR - ALERT_LEAD_S <= ts <= T0 + HOUR + 600]


async def test_the_admins_export_of_a_worker_is_whole(api: ApiHarness) -> None:
    device, _ = await worker(api, "alerts_only")
    admin = await api.caller(device.tenant_id, "admin")
    times = [T0 + n * 60 for n in range(50)]
    await api.store_positions(device, [position(n + 1, ts) for n, ts in enumerate(times)])
    assert await walk(api, admin, device) == []  # the admin's REST reads are filtered like anyone's

    response = await api.http.get(f"/api/v1/devices/{device.imei}/export", headers=admin.headers)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("positions.csv").decode())))
        about = orjson.loads(archive.read("device.json"))
    assert [int(_unix(row["ts"])) for row in rows] == times
    assert about["last_position"]["ts"] == "2026-01-01T00:49:00Z"


async def test_a_page_of_1000_costs_one_alert_query_and_cached_settings(api: ApiHarness) -> None:
    device, caller = await worker(api, "on_shift", {"hours": [[0, 12]], "timezone": "UTC"})
    await api.store_positions(device, [position(n + 1, T0 + n * 30) for n in range(1200)])
    await api.alert(device, ts=T0 + 11 * HOUR)
    calls: dict[str, int] = {}
    for name in ("alerts_overlapping", "tenant_settings", "device_settings"):
        real = getattr(api.store, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)

        setattr(api.store, name, counted)  # counting the store reads the gate makes
    path = f"/api/v1/devices/{device.imei}/positions"
    for _ in range(3):
        page = await api.http.get(path, headers=caller.headers, params={"limit": 1000})
        assert page.status_code == 200 and len(page.json()["items"]) == 1000
    assert calls == {"alerts_overlapping": 3, "tenant_settings": 1, "device_settings": 1}

"""GET /api/v1/devices/{imei}/export (CONTRACT §8) over both storage adapters: the zip holds every
frame stored for the device (counted against the store), its alerts with timelines, its commands;
nothing of another device; admins only; the read is audited."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

import orjson
import pytest

from services.api import export
from shared.protocols.xsole import Activity, CommandCode, Heartbeat
from shared.store import Device, FrameRecord
from tests.helpers.api import T0, ApiHarness, position
from tests.helpers.stored import commit_frames

FILES = {"device.json", "positions.csv", "activity.csv", "heartbeats.csv", "alerts.json", "commands.json"}


@pytest.fixture
async def api(harness: ApiHarness) -> ApiHarness:
    return harness  # once per storage adapter


async def store_day(api: ApiHarness, device: Device, positions: int, *, lat_e7: int = 436163000) -> None:
    """`positions` positions, a third as many activities and heartbeats, committed in pages as ingest does."""
    events: list[Any] = []
    for n in range(positions):
        events.append(position(n + 1, T0 + n, lat_e7=lat_e7 + n))
        if n % 3 == 0:
            events.append(Activity(100_000 + n, T0 + n, 12, 2, 96, 80, 0))
            events.append(Heartbeat(200_000 + n, T0 + n, 80, -71))
    for start in range(0, len(events), 500):
        page = events[start : start + 500]
        await commit_frames(api.store, [FrameRecord(device.id, device.tenant_id, device.imei, e, T0) for e in page])


async def count_stored(read: Any, device_id: int) -> int:
    total, after = 0, None
    while rows := await read(device_id, after=after, limit=1000):
        total += len(rows)
        after = (rows[-1].ts, rows[-1].seq)
    return total


def unzip(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def rows(text: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.decode())))


async def test_the_export_holds_everything_stored_about_the_device_and_nothing_else(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "PAGE", 40)  # several pages of everything, without storing thousands
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    device, other = await api.device(tenant, name="Alice"), await api.device(tenant, name="Bob")
    frames = 40 * 3 + 7
    await store_day(api, device, frames)
    await store_day(api, other, 5, lat_e7=400000000)
    alert = await api.alert(device)
    await api.store.acknowledge_alert(tenant, alert.id, by="Ana")
    await api.alert(other)
    command = await api.store.enqueue_command(device_id=device.id, cmd=CommandCode.VIBRATE)

    got = await api.http.get(f"/api/v1/devices/{device.imei}/export", headers=admin.headers)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/zip"
    assert f"solewatch-{device.imei}-" in got.headers["content-disposition"]
    files = unzip(got.content)
    assert set(files) == FILES

    about = orjson.loads(files["device.json"])
    assert (about["imei"], about["name"]) == (device.imei, "Alice") and "settings" in about
    positions = rows(files["positions.csv"])
    assert len(positions) == frames == await count_stored(api.store.positions, device.id)
    assert len(rows(files["activity.csv"])) == await count_stored(api.store.activities, device.id) > 0
    assert len(rows(files["heartbeats.csv"])) == await count_stored(api.store.heartbeats, device.id) > 0
    assert all(p["lat"].startswith("43.616") for p in positions)  # none of Bob's
    assert len({(p["ts"], p["seq"]) for p in positions}) == frames
    assert set(positions[0]) == {
        "ts",
        "seq",
        "lat",
        "lon",
        "alt",
        "speed",
        "course",
        "sats",
        "hdop",
        "battery",
        "buffered",
    }

    [exported] = orjson.loads(files["alerts.json"])
    assert (exported["id"], exported["status"]) == (alert.id, "acknowledged")
    assert [line["action"] for line in exported["timeline"]] == ["raised", "acknowledged"]
    assert [(c["id"], c["command"]) for c in orjson.loads(files["commands.json"])] == [(command, "vibrate")]

    [entry] = [r.entry for r in await api.store.audit_log(tenant) if r.entry.action == "export.read"]
    assert (entry.target_id, entry.detail["format"], entry.actor.id) == (device.imei, "zip", str(admin.user_id))


async def test_a_device_with_nothing_stored_exports_headers_and_empty_lists(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant)
    got = await api.http.get(f"/api/v1/devices/{device.imei}/export", headers=(await api.caller(tenant)).headers)
    files = unzip(got.content)
    assert files["positions.csv"].startswith(b"ts,seq,lat,lon") and rows(files["positions.csv"]) == []
    assert orjson.loads(files["alerts.json"]) == [] and orjson.loads(files["commands.json"]) == []


async def test_only_admins_of_the_devices_tenant_export(api: ApiHarness) -> None:
    tenant, elsewhere = await api.tenant(), await api.tenant()
    device = await api.device(tenant)
    path = f"/api/v1/devices/{device.imei}/export"
    for role in ("supervisor", "viewer"):
        refused = await api.http.get(path, headers=(await api.caller(tenant, role)).headers)
        assert refused.status_code == 403, refused.text
    assert (await api.http.get(path, headers=(await api.caller(elsewhere)).headers)).status_code == 404
    assert (await api.http.get(path)).status_code == 401
    bad = await api.http.get("/api/v1/devices/not-an-imei/export", headers=(await api.caller(tenant)).headers)
    assert bad.status_code == 422 and "detail" in bad.json()
    assert [r for r in await api.store.audit_log(tenant) if r.entry.action == "export.read"] == []

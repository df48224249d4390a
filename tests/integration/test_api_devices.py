"""/api/v1/devices: registration, listing, live state, positions; tenant isolation throughout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.store import hash_device_token
from tests.helpers.api import T0, ApiHarness, api_harness, position

IMEI = "356307042441013"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path) as harness:
        yield harness


# -- authentication and roles --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/devices", f"/api/v1/devices/{IMEI}", f"/api/v1/devices/{IMEI}/positions"])
async def test_every_device_path_needs_credentials(api: ApiHarness, path: str) -> None:
    missing = await api.http.get(path)
    assert missing.status_code == 401 and "detail" in missing.json()
    forged = await api.http.get(path, headers={"Authorization": "Bearer not.a.token"})
    assert forged.status_code == 401 and "detail" in forged.json()
    register = await api.http.post("/api/v1/devices", json={"imei": IMEI, "name": "x"})
    assert register.status_code == 401


@pytest.mark.parametrize("role", ["viewer", "supervisor"])
async def test_only_admins_register_devices(api: ApiHarness, role: str) -> None:
    caller = await api.caller(await api.tenant(), role)  # type: ignore[arg-type]
    response = await api.http.post("/api/v1/devices", headers=caller.headers, json={"imei": IMEI, "name": "Alice"})
    assert response.status_code == 403 and "detail" in response.json()
    assert await api.store.device_by_imei(IMEI) is None


# -- registration ---------------------------------------------------------------------------


async def test_register_returns_the_secret_once_and_stores_only_its_hash(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.post("/api/v1/devices", headers=admin.headers, json={"imei": IMEI, "name": " Alice "})
    assert response.status_code == 201, response.text
    body = response.json()
    token = body.pop("token")
    assert len(token) == 32 and bytes.fromhex(token)
    assert body["imei"] == IMEI and body["name"] == "Alice" and body["online"] is False
    assert body["last_seen"] is None and body["battery"] is None and body["last_position"] is None
    assert body["created_at"].endswith("Z")
    stored = await api.store.device_by_imei(IMEI)
    assert stored is not None and stored.tenant_id == admin.tenant_id
    assert stored.token_hash == hash_device_token(bytes.fromhex(token))
    shown_again = (await api.http.get(f"/api/v1/devices/{IMEI}", headers=admin.headers)).json()
    assert "token" not in shown_again


async def test_an_imei_registers_once_across_all_tenants(api: ApiHarness) -> None:
    admin_a = await api.caller(await api.tenant())
    admin_b = await api.caller(await api.tenant())
    assert (
        await api.http.post("/api/v1/devices", headers=admin_a.headers, json={"imei": IMEI, "name": "Alice"})
    ).status_code == 201
    same_tenant = await api.http.post("/api/v1/devices", headers=admin_a.headers, json={"imei": IMEI, "name": "Again"})
    other_tenant = await api.http.post("/api/v1/devices", headers=admin_b.headers, json={"imei": IMEI, "name": "Thief"})
    assert same_tenant.status_code == other_tenant.status_code == 409
    assert same_tenant.json() == other_tenant.json()  # nothing says whose device it is
    device = await api.store.device_by_imei(IMEI)
    assert device is not None and device.tenant_id == admin_a.tenant_id and device.name == "Alice"


@pytest.mark.parametrize(
    "body",
    [
        {"imei": "12", "name": "x"},
        {"imei": "35630704244101a", "name": "x"},
        {"imei": "3563070424410133", "name": "x"},
        {"imei": 356307042441013, "name": "x"},
        {"imei": IMEI, "name": ""},
        {"imei": IMEI},
        {"imei": IMEI, "name": "x", "tenant_id": 2},
        [],
    ],
)
async def test_register_refuses_invalid_bodies(api: ApiHarness, body: object) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.post("/api/v1/devices", headers=admin.headers, json=body)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)


async def test_register_refuses_junk_json(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.post(
        "/api/v1/devices", content=b'{"imei": "3563', headers={**admin.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 422 and "detail" in response.json()


# -- listing ---------------------------------------------------------------------------------


async def test_list_walks_every_device_of_the_tenant_exactly_once(api: ApiHarness) -> None:
    tenant = await api.tenant()
    other = await api.tenant()
    mine = [(await api.device(tenant)).imei for _ in range(7)]
    await api.device(other)
    viewer = await api.caller(tenant, "viewer")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        response = await api.http.get("/api/v1/devices", headers=viewer.headers, params=params)
        assert response.status_code == 200, response.text
        seen += [device["imei"] for device in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert seen == mine and pages == 3
    exact = await api.http.get("/api/v1/devices", headers=viewer.headers, params={"limit": 7})
    assert len(exact.json()["items"]) == 7 and exact.json()["next_cursor"] is None


async def test_list_of_a_tenant_without_devices_is_empty(api: ApiHarness) -> None:
    await api.device(await api.tenant())
    viewer = await api.caller(await api.tenant(), "viewer")
    response = await api.http.get("/api/v1/devices", headers=viewer.headers)
    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"limit": "many"}, {"cursor": "!!!"}, {"cursor": "W10"}, {"cursor": "WyJhIl0"}],
)
async def test_list_refuses_bad_paging(api: ApiHarness, params: dict[str, Any]) -> None:
    viewer = await api.caller(await api.tenant(), "viewer")
    response = await api.http.get("/api/v1/devices", headers=viewer.headers, params=params)
    assert response.status_code == 422 and "detail" in response.json()


# -- one device --------------------------------------------------------------------------------


async def test_device_shows_online_state_battery_and_last_fix(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    await api.store_positions(
        device,
        [
            position(2, T0 + 10, lat_e7=436163100, battery=90),
            position(3, T0 + 20, lat_e7=436163200, battery=88),
            position(4, T0 + 30, lat_e7=999999999, flags=0, battery=87),  # no valid fix: not the last position
        ],
        received_at=T0 + 31,
    )
    await api.cache.set(f"device:{device.id}:online", b"1", ttl=60)
    body = (await api.http.get(f"/api/v1/devices/{IMEI}", headers=viewer.headers)).json()
    assert body["online"] is True and body["battery"] == 87
    assert body["last_seen"] == "2026-01-01T00:00:31Z"
    assert body["last_position"] == {"ts": "2026-01-01T00:00:20Z", "lat": pytest.approx(43.61632), "lon": 7.0553}
    await api.cache.delete(f"device:{device.id}:online")
    assert (await api.http.get(f"/api/v1/devices/{IMEI}", headers=viewer.headers)).json()["online"] is False


async def test_another_tenants_device_does_not_exist(api: ApiHarness) -> None:
    device = await api.device(await api.tenant(), IMEI)
    await api.store_positions(device, [position(2)])
    outsider = await api.caller(await api.tenant())
    for path in (f"/api/v1/devices/{IMEI}", f"/api/v1/devices/{IMEI}/positions"):
        foreign = await api.http.get(path, headers=outsider.headers)
        unknown = await api.http.get(path.replace(IMEI, "490154203237518"), headers=outsider.headers)
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.json() == unknown.json()


async def test_a_malformed_imei_in_the_path_is_invalid(api: ApiHarness) -> None:
    viewer = await api.caller(await api.tenant(), "viewer")
    assert (await api.http.get("/api/v1/devices/12345", headers=viewer.headers)).status_code == 422


# -- positions --------------------------------------------------------------------------------


async def test_positions_come_oldest_first_in_api_units(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    await api.store_positions(
        device,
        [
            position(3, T0 + 1, flags=0b11, speed_cms=0, course_ddeg=3599, alt_m=-5),
            position(2, T0),
        ],
    )
    response = await api.http.get(f"/api/v1/devices/{IMEI}/positions", headers=viewer.headers)
    assert response.status_code == 200
    first, second = response.json()["items"]
    assert first == {
        "ts": "2026-01-01T00:00:00Z",
        "lat": 43.6163,
        "lon": 7.0553,
        "alt": 12,
        "speed": 1.4,
        "course": 270.5,
        "sats": 9,
        "hdop": 0.8,
        "battery": 87,
        "buffered": False,
    }
    assert second["ts"] == "2026-01-01T00:00:01Z" and second["buffered"] is True
    assert second["speed"] == 0 and second["course"] == 359.9 and second["alt"] == -5
    assert response.json()["next_cursor"] is None


async def test_positions_walk_a_time_window_exactly_once(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    # Two frames share each second (distinct seqs): the cursor must not lose either.
    await api.store_positions(device, [position(seq, T0 + seq // 2, lat_e7=436160000 + seq) for seq in range(20)])
    window = {"since": "2026-01-01T00:00:02Z", "until": "2026-01-01T01:00:07+01:00"}  # 00:00:02 .. 00:00:07 UTC
    seqs: list[int] = []
    cursor = None
    while True:
        params = window | {"limit": 3} | ({"cursor": cursor} if cursor else {})
        response = await api.http.get(f"/api/v1/devices/{IMEI}/positions", headers=viewer.headers, params=params)
        assert response.status_code == 200, response.text
        seqs += [round(item["lat"] * 1e7) - 436160000 for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert seqs == list(range(4, 16))


async def test_naive_and_fractional_bounds_are_utc_and_inclusive(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    await api.store_positions(device, [position(seq, T0 + seq) for seq in range(5)])
    params = {"since": "2026-01-01T00:00:00.5", "until": "2026-01-01T00:00:03.9"}
    items = (await api.http.get(f"/api/v1/devices/{IMEI}/positions", headers=viewer.headers, params=params)).json()[
        "items"
    ]
    assert [item["ts"] for item in items] == [f"2026-01-01T00:00:0{s}Z" for s in (1, 2, 3)]


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"until": "2026-13-01T00:00:00Z"},
        {"until": "0.5"},
        {"since": "4.2e-291"},
        {"limit": 0},
        {"limit": 1001},
        {"cursor": "bm90IGpzb24"},
        {"cursor": "WzFd"},
    ],
)
async def test_positions_refuse_junk_parameters(api: ApiHarness, params: dict[str, Any]) -> None:
    tenant = await api.tenant()
    await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    response = await api.http.get(f"/api/v1/devices/{IMEI}/positions", headers=viewer.headers, params=params)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()


async def test_a_window_ending_before_it_starts_is_empty(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    await api.store_positions(device, [position(1, ts=T0)])
    viewer = await api.caller(tenant, "viewer")
    params = {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    response = await api.http.get(f"/api/v1/devices/{IMEI}/positions", headers=viewer.headers, params=params)
    assert response.status_code == 200 and response.json() == {"items": [], "next_cursor": None}

"""/api/v1/devices/{imei}/settings: a worker's offline delay and shift hours."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.store import hash_device_token
from tests.helpers.api import ApiHarness, api_harness

IMEI = "356307042441013"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path) as harness:
        yield harness


async def test_an_admin_sets_a_workers_overrides_and_everyone_reads_them(api: ApiHarness) -> None:
    tenant = await api.tenant()
    await api.store.add_device(tenant_id=tenant, imei=IMEI, name="Alice", token_hash=hash_device_token(b"x"))
    admin, viewer = await api.caller(tenant), await api.caller(tenant, "viewer")
    url = f"/api/v1/devices/{IMEI}/settings"
    assert (await api.http.get(url, headers=viewer.headers)).json() == {"offline_after": None, "shift": None}

    body = {"offline_after": 300, "shift": {"hours": [[22, 6]], "timezone": "Europe/Paris"}}
    assert (await api.http.put(url, headers=viewer.headers, json=body)).status_code == 403
    saved = await api.http.put(url, headers=admin.headers, json=body)
    assert saved.status_code == 200, saved.text
    expected = {"offline_after": 300.0, "shift": {"hours": [[22.0, 6.0]], "timezone": "Europe/Paris"}}
    assert saved.json() == expected
    assert (await api.http.get(url, headers=viewer.headers)).json() == expected

    other_admin = await api.caller(await api.tenant())
    assert (await api.http.get(url, headers=other_admin.headers)).status_code == 404
    assert (await api.http.put(url, headers=other_admin.headers, json=body)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"offline_after": 5},
        {"shift": {"hours": [[25, 6]]}},
        {"shift": {"hours": [[8, 8]]}},
        {"shift": {"hours": [[8, 17]], "timezone": "Mars/Olympus"}},
        {"shift": {"hours": []}},
        {"colour": "red"},
    ],
)
async def test_bad_settings_are_refused_with_a_reason(api: ApiHarness, body: dict) -> None:
    tenant = await api.tenant()
    await api.store.add_device(tenant_id=tenant, imei=IMEI, name="Alice", token_hash=hash_device_token(b"x"))
    admin = await api.caller(tenant)
    response = await api.http.put(f"/api/v1/devices/{IMEI}/settings", headers=admin.headers, json=body)
    assert response.status_code == 422 and response.json()["detail"]

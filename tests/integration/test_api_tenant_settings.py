"""/api/v1/tenant/settings (CONTRACT §8): defaults, a merge that keeps what a PUT leaves
out, validation that changes nothing, roles, tenant isolation and the audit entry."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.api import ApiHarness

PATH = "/api/v1/tenant/settings"
DEFAULTS = {"telemetry_retention_days": 90, "alert_retention_days": 730, "location_visibility": "always"}


@pytest.fixture
async def api(harness: ApiHarness) -> ApiHarness:
    return harness  # once per storage adapter


async def test_settings_need_credentials(api: ApiHarness) -> None:
    assert (await api.http.get(PATH)).status_code == 401
    assert (await api.http.put(PATH, json={"telemetry_retention_days": 30})).status_code == 401


async def test_defaults_then_a_put_merges_and_everyone_in_the_tenant_reads_it(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin, viewer = await api.caller(tenant), await api.caller(tenant, "viewer")
    first = await api.http.get(PATH, headers=viewer.headers)
    assert first.status_code == 200 and first.json() == DEFAULTS

    put = await api.http.put(PATH, headers=admin.headers, json={"telemetry_retention_days": 30})
    assert put.status_code == 200, put.text
    assert put.json() == DEFAULTS | {"telemetry_retention_days": 30}
    # Left out: kept as they are (never reset to the default).
    put = await api.http.put(PATH, headers=admin.headers, json={"location_visibility": "alerts_only"})
    expected = {"telemetry_retention_days": 30, "alert_retention_days": 730, "location_visibility": "alerts_only"}
    assert put.json() == expected
    assert (await api.http.get(PATH, headers=viewer.headers)).json() == expected


async def test_another_tenant_keeps_its_own(api: ApiHarness) -> None:
    acme, globex = await api.tenant(), await api.tenant()
    acme_admin, globex_admin = await api.caller(acme), await api.caller(globex)
    whole = {"telemetry_retention_days": 1, "alert_retention_days": 3650, "location_visibility": "on_shift"}
    assert (await api.http.put(PATH, headers=acme_admin.headers, json=whole)).json() == whole
    assert (await api.http.get(PATH, headers=globex_admin.headers)).json() == DEFAULTS
    assert (await api.http.get(PATH, headers=acme_admin.headers)).json() == whole


@pytest.mark.parametrize(
    "body",
    [
        {"telemetry_retention_days": 0},
        {"telemetry_retention_days": 3651},
        {"alert_retention_days": 29},
        {"alert_retention_days": 3651},
        {"telemetry_retention_days": "90"},
        {"telemetry_retention_days": 90.5},
        {"telemetry_retention_days": True},
        {"telemetry_retention_days": 10**30},
        {"telemetry_retention_days": 1e300},
        {"alert_retention_days": 29.0},
        {"telemetry_retention_days": None},
        {"location_visibility": "never"},
        {"location_visibility": None},
        {"telemetry_retention_days": 30, "retention": 5},
        {},
        [],
        "90",
    ],
)
async def test_bad_settings_are_422_and_change_nothing(api: ApiHarness, body: Any) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    response = await api.http.put(PATH, headers=admin.headers, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert (await api.http.get(PATH, headers=admin.headers)).json() == DEFAULTS
    assert [r for r in await api.store.audit_log(tenant) if r.entry.action == "settings.update"] == []


async def test_a_whole_number_written_with_a_fraction_is_a_number_of_days(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    put = await api.http.put(PATH, headers=admin.headers, json={"alert_retention_days": 135.0})  # a JSON integer
    assert put.status_code == 200 and put.json()["alert_retention_days"] == 135


async def test_a_malformed_body_is_a_json_error(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    headers = admin.headers | {"Content-Type": "application/json"}
    response = await api.http.put(PATH, headers=headers, content=b'{"telemetry_retention_days": ')
    assert response.status_code == 422 and response.json()["detail"]


@pytest.mark.parametrize("role", ["viewer", "supervisor"])
async def test_only_admins_change_them(api: ApiHarness, role: str) -> None:
    tenant = await api.tenant()
    caller = await api.caller(tenant, role)  # type: ignore[arg-type]  # a Role literal, parametrized
    response = await api.http.put(PATH, headers=caller.headers, json={"telemetry_retention_days": 1})
    assert response.status_code == 403 and response.json()["detail"]
    assert (await api.http.get(PATH, headers=caller.headers)).json() == DEFAULTS


async def test_a_change_is_audited_with_the_whole_result(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    await api.http.put(PATH, headers=admin.headers, json={"alert_retention_days": 365})
    log = (await api.http.get("/api/v1/audit", headers=admin.headers, params={"action": "settings.update"})).json()
    [item] = log["items"]
    assert item["target"] == {"type": "tenant", "id": str(tenant)}
    assert item["actor"]["label"] == admin.email
    assert item["detail"] == DEFAULTS | {"alert_retention_days": 365}

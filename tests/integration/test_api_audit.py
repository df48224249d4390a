"""GET /api/v1/audit over both storage adapters: admins only, newest first, filters and paging, one
tenant's entries; and the entries each change made through the API writes (CONTRACT §5)."""

from __future__ import annotations

from typing import Any

import pytest

from services.authn.apikeys import hash_api_key, new_api_key
from shared.store.audit import Actor, AuditEntry
from tests.helpers.api import T0, ApiHarness, Caller, position

IMEI = "356307042441013"
DEPOT = {"name": "Depot", "geometry": {"type": "Circle", "center": [7.0553, 43.6163], "radius_m": 250}}


@pytest.fixture
async def api(harness: ApiHarness) -> ApiHarness:
    return harness  # once per storage adapter


async def audit(api: ApiHarness, caller: Caller, **params: Any) -> list[dict[str, Any]]:
    response = await api.http.get("/api/v1/audit", headers=caller.headers, params=params)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return response.json()["items"]  # type: ignore[no-any-return]  # JSON from our own API


async def api_key(api: ApiHarness, tenant_id: int, role: str) -> dict[str, str]:
    key = new_api_key()
    await api.store.create_api_key(
        tenant_id=tenant_id,
        name=f"{role}-key",
        prefix=key[:8],
        key_hash=hash_api_key(key),
        role=role,  # type: ignore[arg-type]  # a Role literal
    )
    return {"X-API-Key": key}


async def test_only_admins_read_the_log(api: ApiHarness) -> None:
    tenant = await api.tenant()
    assert (await api.http.get("/api/v1/audit")).status_code == 401
    for role in ("viewer", "supervisor"):
        caller = await api.caller(tenant, role)  # type: ignore[arg-type]  # a Role literal
        refused = await api.http.get("/api/v1/audit", headers=caller.headers)
        assert refused.status_code == 403 and "detail" in refused.json()
        assert (await api.http.get("/api/v1/audit", headers=await api_key(api, tenant, role))).status_code == 403
    assert (await api.http.get("/api/v1/audit", headers=await api_key(api, tenant, "admin"))).status_code == 200


async def test_entries_are_never_changed_or_deleted_through_the_api(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    await api.http.post("/api/v1/contacts", headers=admin.headers, json={"name": "Ana", "phone": "+33612345678"})
    [entry] = await audit(api, admin)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert (await api.http.request(method, "/api/v1/audit", headers=admin.headers)).status_code == 405
        one = await api.http.request(method, f"/api/v1/audit/{entry['id']}", headers=admin.headers)
        assert one.status_code in (404, 405)
    assert await audit(api, admin) == [entry]


async def test_entries_are_shaped_as_the_contract_says_and_newest_first(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    first = await api.http.post(
        "/api/v1/contacts", headers=admin.headers, json={"name": "Ana", "phone": "+33612345678"}
    )
    contact_id = first.json()["id"]
    await api.http.delete(f"/api/v1/contacts/{contact_id}", headers=admin.headers)
    deleted, created = await audit(api, admin)
    assert created == {
        "id": created["id"],
        "at": created["at"],
        "actor": {"type": "user", "id": str(admin.user_id), "label": admin.email},
        "action": "contact.create",
        "target": {"type": "contact", "id": str(contact_id)},
        "detail": {"name": "Ana"},
    }
    assert created["at"].endswith("Z") and created["at"].startswith("20")
    assert deleted["action"] == "contact.delete" and deleted["id"] > created["id"] and deleted["at"] >= created["at"]


async def test_filters_and_paging(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    actor = Actor("system", None, "cli")
    for n in range(7):
        await api.store.record_audit(
            AuditEntry(tenant, actor, "device.update" if n % 2 else "auth.login", "device", str(n))
        )
    everything = await audit(api, admin)
    assert [e["target"]["id"] for e in everything] == [str(n) for n in reversed(range(7))]
    assert [e["target"]["id"] for e in await audit(api, admin, action="device.update")] == ["5", "3", "1"]
    assert await audit(api, admin, action="user.invite") == []

    walked: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = (
            await api.http.get(
                "/api/v1/audit", headers=admin.headers, params={"limit": 3} | ({"cursor": cursor} if cursor else {})
            )
        ).json()
        assert len(page["items"]) <= 3
        walked += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == everything

    middle = everything[3]["at"]
    newer = await audit(api, admin, since=middle)
    older = await audit(api, admin, until=middle)
    assert len(newer) + len(older) == 7 and all(e["at"] >= middle for e in newer)
    assert await audit(api, admin, since="2000-01-01T00:00:00Z", until="2000-01-02T00:00:00") == []


@pytest.mark.parametrize(
    "params",
    [
        {"action": "alert"},
        {"action": "ALERT.ACK"},
        {"action": "alert.ack; drop"},
        {"action": ""},
        {"since": "yesterday"},
        {"until": "1767225600"},
        {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"limit": 0},
        {"limit": 1001},
        {"cursor": "not a cursor"},
        {"cursor": "AAAAAGlVuQAAAAAAAAAAAA"},  # a (time, seq) cursor, not an id
    ],
)
async def test_bad_filters_are_422(api: ApiHarness, params: dict[str, Any]) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.get("/api/v1/audit", headers=admin.headers, params=params)
    assert response.status_code == 422 and isinstance(response.json()["detail"], list)


async def test_a_tenant_sees_only_its_own_entries(api: ApiHarness) -> None:
    acme, globex = await api.tenant(), await api.tenant()
    acme_admin, globex_admin = await api.caller(acme), await api.caller(globex)
    await api.http.post("/api/v1/contacts", headers=acme_admin.headers, json={"name": "Ana", "phone": "+33612345678"})
    assert len(await audit(api, acme_admin)) == 1
    assert await audit(api, globex_admin) == []


# -- what leaves an entry ------------------------------------------------------------------------


async def test_each_change_through_the_api_writes_one_entry(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin, supervisor = await api.caller(tenant), await api.caller(tenant, "supervisor")
    device = await api.device(tenant, IMEI)
    await api.store_positions(device, [position(1, T0)])

    contact = (
        await api.http.post("/api/v1/contacts", headers=admin.headers, json={"name": "Ana", "phone": "+33612345678"})
    ).json()
    policy = {"steps": [{"contacts": [contact["id"]], "wait_s": 120}]}
    assert (await api.http.put("/api/v1/escalation-policy", headers=admin.headers, json=policy)).status_code == 200
    geofence = (
        await api.http.post("/api/v1/geofences", headers=admin.headers, json=DEPOT | {"devices": [IMEI]})
    ).json()
    assert (await api.http.delete(f"/api/v1/geofences/{geofence['id']}", headers=admin.headers)).status_code == 204
    settings = {"offline_after": 300, "shift": None}
    assert (
        await api.http.put(f"/api/v1/devices/{IMEI}/settings", headers=admin.headers, json=settings)
    ).status_code == 200
    alert = await api.alert(device)
    ack = await api.http.post(
        f"/api/v1/alerts/{alert.id}/ack", headers=supervisor.headers | {"X-Solewatch-Client": "dashboard"}
    )
    assert ack.status_code == 200
    await api.http.post(f"/api/v1/alerts/{alert.id}/ack", headers=admin.headers)  # a repeat: no change, no entry
    resolved = await api.http.post(f"/api/v1/alerts/{alert.id}/resolve", headers=admin.headers, json={"note": "ok"})
    assert resolved.status_code == 200
    await api.http.post(f"/api/v1/alerts/{alert.id}/resolve", headers=admin.headers)

    entries = list(reversed(await audit(api, admin)))
    assert [(e["action"], e["target"], e["actor"]["label"]) for e in entries] == [
        ("contact.create", {"type": "contact", "id": str(contact["id"])}, admin.email),
        ("escalation.update", {"type": "escalation", "id": None}, admin.email),
        ("geofence.create", {"type": "geofence", "id": str(geofence["id"])}, admin.email),
        ("geofence.delete", {"type": "geofence", "id": str(geofence["id"])}, admin.email),
        ("settings.update", {"type": "device", "id": IMEI}, admin.email),
        ("alert.ack", {"type": "alert", "id": str(alert.id)}, supervisor.email),
        ("alert.resolve", {"type": "alert", "id": str(alert.id)}, admin.email),
    ]
    details = {e["action"]: e["detail"] for e in entries}
    assert details["escalation.update"] == {
        "steps": [{"contacts": [contact["id"]], "wait_s": 120.0, "channels": ["sms", "email"]}]
    }
    assert details["geofence.create"] == {"name": "Depot", "devices": [IMEI], "alert_on": ["exit"]}
    assert details["settings.update"] == {"offline_after": 300.0, "shift": None}
    assert details["alert.ack"] == {"via": "dashboard"}
    assert details["alert.resolve"] == {"note": "ok"}


async def test_refused_changes_write_nothing(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin, viewer = await api.caller(tenant), await api.caller(tenant, "viewer")
    device = await api.device(tenant, IMEI)
    alert = await api.alert(device)
    assert (await api.http.post(f"/api/v1/alerts/{alert.id}/ack", headers=viewer.headers)).status_code == 403
    assert (await api.http.post("/api/v1/alerts/999/ack", headers=admin.headers)).status_code == 404
    assert (await api.http.delete("/api/v1/geofences/999", headers=admin.headers)).status_code == 404
    bad_policy = {"steps": [{"contacts": [999], "wait_s": 120}]}
    assert (await api.http.put("/api/v1/escalation-policy", headers=admin.headers, json=bad_policy)).status_code == 422
    assert (await api.http.post("/api/v1/geofences", headers=admin.headers, json={"name": "x"})).status_code == 422
    await api.http.post(f"/api/v1/alerts/{alert.id}/resolve", headers=admin.headers)
    assert (await api.http.post(f"/api/v1/alerts/{alert.id}/ack", headers=admin.headers)).status_code == 409
    assert [e["action"] for e in await audit(api, admin)] == ["alert.resolve"]


async def test_an_api_key_is_named_as_the_actor(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    device = await api.device(tenant, IMEI)
    alert = await api.alert(device)
    headers = await api_key(api, tenant, "supervisor")
    assert (await api.http.post(f"/api/v1/alerts/{alert.id}/ack", headers=headers)).status_code == 200
    [entry] = await audit(api, admin)
    assert entry["actor"]["type"] == "api_key" and entry["actor"]["label"] == "supervisor-key"
    assert entry["detail"] == {"via": "api"}

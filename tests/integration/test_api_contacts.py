"""/api/v1/contacts: who is told; validation, roles and tenant isolation."""

from __future__ import annotations

import pytest

from shared.store.alerts import ALERT_KINDS
from tests.helpers.api import ApiHarness

NIGHT = {"name": "Night supervisor", "email": "night@acme.example", "phone": "+33612345678", "kinds": ["sos", "fall"]}


@pytest.fixture
async def api(harness: ApiHarness) -> ApiHarness:
    return harness  # once per storage adapter


async def test_contact_paths_need_credentials(api: ApiHarness) -> None:
    assert (await api.http.get("/api/v1/contacts")).status_code == 401
    assert (await api.http.post("/api/v1/contacts", json=NIGHT)).status_code == 401
    assert (await api.http.delete("/api/v1/contacts/1")).status_code == 401


async def test_add_list_and_delete(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    created = await api.http.post("/api/v1/contacts", headers=admin.headers, json=NIGHT)
    assert created.status_code == 201, created.text
    contact = created.json()
    assert {k: contact[k] for k in NIGHT} == NIGHT and contact["created_at"].endswith("Z")
    sms_only = await api.http.post(
        "/api/v1/contacts", headers=admin.headers, json={"name": "Guard", "phone": "+14155550100"}
    )
    assert sms_only.status_code == 201
    assert sms_only.json()["email"] is None and sms_only.json()["kinds"] == list(ALERT_KINDS)  # all kinds by default

    viewer = await api.caller(tenant, "viewer")
    listed = (await api.http.get("/api/v1/contacts", headers=viewer.headers)).json()["items"]
    assert [c["id"] for c in listed] == [contact["id"], sms_only.json()["id"]]

    deleted = await api.http.delete(f"/api/v1/contacts/{contact['id']}", headers=admin.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    again = await api.http.delete(f"/api/v1/contacts/{contact['id']}", headers=admin.headers)
    assert again.status_code == 404 and "detail" in again.json()
    assert [c["id"] for c in (await api.http.get("/api/v1/contacts", headers=viewer.headers)).json()["items"]] == [
        sms_only.json()["id"]
    ]


async def test_kinds_are_deduplicated(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.post(
        "/api/v1/contacts", headers=admin.headers, json=NIGHT | {"kinds": ["sos", "fall", "sos"]}
    )
    assert response.json()["kinds"] == ["sos", "fall"]


@pytest.mark.parametrize(
    "change",
    [
        {"phone": "0612345678"},
        {"phone": "+0612345678"},
        {"phone": "+33 6 12 34 56 78"},
        {"phone": "+1234"},
        {"email": "not-an-email"},
        {"email": None, "phone": None},
        {"kinds": ["sos", "earthquake"]},
        {"kinds": []},
        {"kinds": "sos"},
        {"name": ""},
        {"role": "admin"},
    ],
)
async def test_invalid_contacts_are_refused(api: ApiHarness, change: dict[str, object]) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.post("/api/v1/contacts", headers=admin.headers, json=NIGHT | change)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)
    assert await api.store.contacts(admin.tenant_id) == []


async def test_junk_json_is_refused(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.post(
        "/api/v1/contacts", content=b"name=x", headers=admin.headers | {"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and "detail" in response.json()


@pytest.mark.parametrize("role", ["viewer", "supervisor"])
async def test_only_admins_change_contacts(api: ApiHarness, role: str) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    contact = (await api.http.post("/api/v1/contacts", headers=admin.headers, json=NIGHT)).json()
    caller = await api.caller(tenant, role)  # type: ignore[arg-type]
    assert (await api.http.post("/api/v1/contacts", headers=caller.headers, json=NIGHT)).status_code == 403
    assert (await api.http.delete(f"/api/v1/contacts/{contact['id']}", headers=caller.headers)).status_code == 403
    assert (await api.http.get("/api/v1/contacts", headers=caller.headers)).status_code == 200
    assert len(await api.store.contacts(tenant)) == 1


async def test_another_tenants_contacts_do_not_exist(api: ApiHarness) -> None:
    owner = await api.caller(await api.tenant())
    contact = (await api.http.post("/api/v1/contacts", headers=owner.headers, json=NIGHT)).json()
    outsider = await api.caller(await api.tenant())
    assert (await api.http.get("/api/v1/contacts", headers=outsider.headers)).json()["items"] == []
    response = await api.http.delete(f"/api/v1/contacts/{contact['id']}", headers=outsider.headers)
    assert response.status_code == 404
    assert len(await api.store.contacts(owner.tenant_id)) == 1

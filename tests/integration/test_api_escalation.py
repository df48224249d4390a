"""/api/v1/escalation-policy: read by any user, replaced by admins, checked against the tenant's contacts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.api import ApiHarness, api_harness


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path) as harness:
        yield harness


async def _contact(api: ApiHarness, headers: dict[str, str], name: str) -> int:
    created = await api.http.post("/api/v1/contacts", headers=headers, json={"name": name, "phone": "+33612345678"})
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


async def test_an_admin_sets_the_policy_everyone_reads_it_and_an_empty_one_removes_it(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin, viewer = await api.caller(tenant), await api.caller(tenant, "viewer")
    first, second = await _contact(api, admin.headers, "Day lead"), await _contact(api, admin.headers, "Site manager")
    assert (await api.http.get("/api/v1/escalation-policy", headers=viewer.headers)).json() == {
        "steps": [],
        "updated_at": None,
    }

    body = {"steps": [{"contacts": [first], "wait_s": 120}, {"contacts": [second, first, second], "wait_s": 600}]}
    assert (await api.http.put("/api/v1/escalation-policy", headers=viewer.headers, json=body)).status_code == 403
    saved = await api.http.put("/api/v1/escalation-policy", headers=admin.headers, json=body)
    assert saved.status_code == 200, saved.text
    expected = [
        {"contacts": [first], "wait_s": 120.0, "channels": ["sms", "email"]},
        {"contacts": [second, first], "wait_s": 600.0, "channels": ["sms", "email"]},
    ]
    assert saved.json()["steps"] == expected and saved.json()["updated_at"].endswith("Z")
    assert (await api.http.get("/api/v1/escalation-policy", headers=viewer.headers)).json()["steps"] == expected

    cleared = await api.http.put("/api/v1/escalation-policy", headers=admin.headers, json={"steps": []})
    assert cleared.json() == {"steps": [], "updated_at": None}
    assert (await api.http.get("/api/v1/escalation-policy", headers=admin.headers)).json()["steps"] == []


async def test_a_step_can_only_name_the_tenants_own_contacts(api: ApiHarness) -> None:
    acme, other = await api.tenant("acme"), await api.tenant("other")
    acme_admin, other_admin = await api.caller(acme), await api.caller(other)
    theirs = await _contact(api, other_admin.headers, "Their guard")
    refused = await api.http.put(
        "/api/v1/escalation-policy", headers=acme_admin.headers, json={"steps": [{"contacts": [theirs], "wait_s": 60}]}
    )
    assert refused.status_code == 422
    assert refused.json()["detail"] == [
        {
            "loc": ["body", "steps", 0, "contacts", 0],
            "msg": f"no contact {theirs} in this tenant",
            "type": "unknown_contact",
        }
    ]
    assert (await api.http.get("/api/v1/escalation-policy", headers=other_admin.headers)).json()["steps"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"steps": [{"contacts": [], "wait_s": 60}]},
        {"steps": [{"contacts": [1], "wait_s": 1}]},
        {"steps": [{"contacts": [1], "wait_s": 10**9}]},
        {"steps": [{"contacts": [1], "wait_s": 60}] * 11},
        {"steps": [{"contacts": [1], "wait_s": 60, "extra": True}]},
        {"steps": "everyone"},
    ],
)
async def test_malformed_policies_are_refused_with_a_reason(api: ApiHarness, body: dict) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.put("/api/v1/escalation-policy", headers=admin.headers, json=body)
    assert response.status_code == 422 and response.json()["detail"]

"""/api/v1/webhook-endpoints (CONTRACT §7): register, list, change, remove, ping, the delivery log and
manual retry; validation, production's URL rules, audit entries and tenant isolation, on each store."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.authn.apikeys import hash_api_key, new_api_key
from tests.helpers.api import STORE_ADAPTERS, ApiHarness, StoreAdapter, api_harness

BASE = "/api/v1/webhook-endpoints"
ARC = {"url": "https://arc.example/solewatch", "events": ["alert.raised", "alert.resolved"], "description": "ARC"}


@pytest.fixture
async def api(harness: ApiHarness) -> ApiHarness:
    return harness  # once per storage adapter


async def admin_key(api: ApiHarness, tenant_id: int) -> dict[str, str]:
    key = new_api_key()
    await api.store.create_api_key(
        tenant_id=tenant_id, name="partner", prefix=key[:8], key_hash=hash_api_key(key), role="admin"
    )
    return {"X-API-Key": key}


async def test_register_shows_the_secret_once_and_lists_without_it(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    created = await api.http.post(BASE, headers=admin.headers, json=ARC)
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert {k: endpoint[k] for k in ARC} == ARC
    assert endpoint["enabled"] is True and endpoint["created_at"].endswith("Z")
    assert endpoint["secret"].startswith("whsec_") and len(endpoint["secret"]) > 30
    stored = await api.store.webhook_endpoint(tenant, endpoint["id"])
    assert stored is not None and stored.secret == endpoint["secret"]  # kept, so deliveries can sign

    one = await api.http.get(f"{BASE}/{endpoint['id']}", headers=admin.headers)
    listed = await api.http.get(BASE, headers=admin.headers)
    assert one.status_code == 200 and "secret" not in one.json()
    assert [e["id"] for e in listed.json()["items"]] == [endpoint["id"]] and listed.json()["next_cursor"] is None
    assert all("secret" not in e for e in listed.json()["items"])
    [entry] = [r.entry for r in await api.store.audit_log(tenant)]
    assert (entry.action, entry.target_id, entry.actor.label) == ("webhook.create", str(endpoint["id"]), admin.email)
    assert endpoint["secret"] not in str(entry.detail)


async def test_endpoints_page_with_a_cursor(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    ids = [
        (await api.http.post(BASE, headers=admin.headers, json={**ARC, "url": f"https://arc.example/{n}"})).json()["id"]
        for n in range(3)
    ]
    first = (await api.http.get(BASE, headers=admin.headers, params={"limit": 2})).json()
    rest = (await api.http.get(BASE, headers=admin.headers, params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [e["id"] for e in first["items"] + rest["items"]] == ids and rest["next_cursor"] is None


async def test_patch_changes_url_events_and_enabled_and_is_audited(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    endpoint = (await api.http.post(BASE, headers=admin.headers, json=ARC)).json()
    patched = await api.http.patch(
        f"{BASE}/{endpoint['id']}",
        headers=admin.headers,
        json={"url": "https://arc.example/v2", "events": ["ping"], "enabled": False},
    )
    assert patched.status_code == 200, patched.text
    assert {k: patched.json()[k] for k in ("url", "events", "enabled", "description")} == {
        "url": "https://arc.example/v2",
        "events": ["ping"],
        "enabled": False,
        "description": "ARC",
    }
    assert (await api.http.get(f"{BASE}/{endpoint['id']}", headers=admin.headers)).json() == patched.json()
    actions = [r.entry.action for r in await api.store.audit_log(tenant)]
    assert actions == ["webhook.update", "webhook.create"]


async def test_delete_removes_it_and_its_log_and_is_audited(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    endpoint = (await api.http.post(BASE, headers=admin.headers, json=ARC)).json()
    assert (await api.http.post(f"{BASE}/{endpoint['id']}/ping", headers=admin.headers)).status_code == 202
    assert (await api.http.delete(f"{BASE}/{endpoint['id']}", headers=admin.headers)).status_code == 204
    assert (await api.http.get(f"{BASE}/{endpoint['id']}", headers=admin.headers)).status_code == 404
    assert (await api.http.get(f"{BASE}/{endpoint['id']}/deliveries", headers=admin.headers)).status_code == 404
    assert (await api.http.delete(f"{BASE}/{endpoint['id']}", headers=admin.headers)).status_code == 404
    assert [r.entry.action for r in await api.store.audit_log(tenant)] == ["webhook.delete", "webhook.create"]


async def test_ping_queues_a_ping_shown_in_the_delivery_log_and_retry_requeues_it(api: ApiHarness) -> None:
    tenant = await api.tenant()
    key = await admin_key(api, tenant)  # a partner's admin key manages its own endpoint
    endpoint = (await api.http.post(BASE, headers=key, json=ARC)).json()
    pinged = await api.http.post(f"{BASE}/{endpoint['id']}/ping", headers=key)
    assert pinged.status_code == 202 and pinged.json()["status"] == "pending"
    event_id = pinged.json()["event_id"]
    log = (await api.http.get(f"{BASE}/{endpoint['id']}/deliveries", headers=key)).json()
    [delivery] = log["items"]
    assert log["next_cursor"] is None
    assert {k: delivery[k] for k in ("event_id", "type", "status", "attempts", "last_status", "delivered_at")} == {
        "event_id": event_id,
        "type": "ping",
        "status": "pending",
        "attempts": 0,
        "last_status": None,
        "delivered_at": None,
    }
    assert delivery["next_attempt_at"].endswith("Z")
    [stored] = await api.store.webhook_deliveries(tenant, endpoint["id"])
    assert b'"type":"ping"' in stored.payload and event_id.encode() in stored.payload

    retried = await api.http.post(f"{BASE}/{endpoint['id']}/deliveries/{event_id}/retry", headers=key)
    assert retried.status_code == 202 and retried.json() == {"event_id": event_id, "status": "pending"}
    missing = await api.http.post(f"{BASE}/{endpoint['id']}/deliveries/evt_{'0' * 24}/retry", headers=key)
    assert missing.status_code == 404 and missing.json()["detail"]
    malformed = await api.http.post(f"{BASE}/{endpoint['id']}/deliveries/nope/retry", headers=key)
    assert malformed.status_code == 422


async def test_the_delivery_log_is_newest_first_and_pages(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    endpoint = (await api.http.post(BASE, headers=admin.headers, json=ARC)).json()
    url = f"{BASE}/{endpoint['id']}"
    ids = [(await api.http.post(f"{url}/ping", headers=admin.headers)).json()["event_id"] for _ in range(3)]
    first = (await api.http.get(f"{url}/deliveries", headers=admin.headers, params={"limit": 2})).json()
    rest = (
        await api.http.get(f"{url}/deliveries", headers=admin.headers, params={"cursor": first["next_cursor"]})
    ).json()
    assert [d["event_id"] for d in first["items"] + rest["items"]] == ids[::-1]


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://arc.example/x", "events": ["ping"]},
        {"url": "arc.example/x", "events": ["ping"]},
        {"url": "https://", "events": ["ping"]},
        {"url": "https://arc.example/x", "events": []},
        {"url": "https://arc.example/x", "events": ["alert.exploded"]},
        {"url": "https://arc.example/x"},
        {"url": "https://arc.example/x", "events": ["ping"], "secret": "mine"},
    ],
)
async def test_bad_bodies_get_422_and_store_nothing(api: ApiHarness, body: dict[str, object]) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    refused = await api.http.post(BASE, headers=admin.headers, json=body)
    assert refused.status_code == 422 and refused.json()["detail"]
    assert await api.store.webhook_endpoints(tenant) == []
    assert await api.store.audit_log(tenant) == []


async def test_another_tenant_sees_none_of_it(api: ApiHarness) -> None:
    tenant, other = await api.tenant(), await api.tenant()
    admin, stranger = await api.caller(tenant), await api.caller(other)
    endpoint = (await api.http.post(BASE, headers=admin.headers, json=ARC)).json()
    event_id = (await api.http.post(f"{BASE}/{endpoint['id']}/ping", headers=admin.headers)).json()["event_id"]
    url = f"{BASE}/{endpoint['id']}"
    assert (await api.http.get(BASE, headers=stranger.headers)).json()["items"] == []
    for method, path in [
        ("GET", url),
        ("PATCH", url),
        ("DELETE", url),
        ("POST", f"{url}/ping"),
        ("GET", f"{url}/deliveries"),
        ("POST", f"{url}/deliveries/{event_id}/retry"),
    ]:
        answer = await api.http.request(method, path, headers=stranger.headers, json={} if method == "PATCH" else None)
        assert answer.status_code == 404, (method, path)
    assert len(await api.store.webhook_deliveries(tenant, endpoint["id"])) == 1
    assert await api.store.audit_log(other) == []


@pytest.mark.parametrize("adapter", STORE_ADAPTERS)
@pytest.mark.parametrize(
    "url",
    [
        "http://arc.example/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://192.168.1.10/hooks",
        "https://[fd00::1]/hooks",
        "https://169.254.169.254/latest",
    ],
)
async def test_production_accepts_only_https_to_public_hosts(tmp_path: Path, adapter: StoreAdapter, url: str) -> None:
    async with api_harness(tmp_path, adapter=adapter, environment="production") as api:
        tenant = await api.tenant()
        admin = await api.caller(tenant)
        refused = await api.http.post(BASE, headers=admin.headers, json={"url": url, "events": ["ping"]})
        assert refused.status_code == 422, refused.text
        assert "url" in str(refused.json()["detail"])
        endpoint = (
            await api.http.post(
                BASE, headers=admin.headers, json={"url": "https://93.184.215.14/h", "events": ["ping"]}
            )
        ).json()
        patched = await api.http.patch(f"{BASE}/{endpoint['id']}", headers=admin.headers, json={"url": url})
        assert patched.status_code == 422
        stored = await api.store.webhook_endpoint(tenant, endpoint["id"])
        assert stored is not None and stored.url == "https://93.184.215.14/h"


async def test_development_accepts_a_local_receiver(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    local = await api.http.post(
        BASE, headers=admin.headers, json={"url": "http://127.0.0.1:8080/h", "events": ["ping"]}
    )
    assert local.status_code == 201


@pytest.mark.parametrize("url", ["http://[::1/x", "http://a.example:99999/x", "http://:80/x", "https://user@/x"])
async def test_a_url_that_does_not_parse_is_a_422(api: ApiHarness, url: str) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    refused = await api.http.post(BASE, headers=admin.headers, json={"url": url, "events": ["ping"]})
    assert refused.status_code == 422, refused.text
    assert await api.store.webhook_endpoints(tenant) == []


@pytest.mark.parametrize("patch", [{"enabled": 0}, {"enabled": "false"}, {"events": []}, {"secret": "mine"}])
async def test_a_bad_patch_is_a_422_and_changes_nothing(api: ApiHarness, patch: dict[str, object]) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    endpoint = (await api.http.post(BASE, headers=admin.headers, json=ARC)).json()
    refused = await api.http.patch(f"{BASE}/{endpoint['id']}", headers=admin.headers, json=patch)
    assert refused.status_code == 422, refused.text
    assert (await api.http.get(f"{BASE}/{endpoint['id']}", headers=admin.headers)).json()["enabled"] is True
    assert [r.entry.action for r in await api.store.audit_log(tenant)] == ["webhook.create"]

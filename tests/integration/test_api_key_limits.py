"""Partner API keys (issue 16): a request budget per key, answered 429 with Retry-After past it,
and `last_used_at` in GET /api/v1/api-keys. Over both storage adapters; the budget's sharing
between API processes over the distributed mode's Redis at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from services.api import create_app
from services.authn import key_limits
from shared.cache.redis import RedisCache
from shared.runtime import Runtime
from tests.harness.servers import redis_server  # noqa: F401  (the fixture, registered by import)
from tests.helpers.api import STORE_ADAPTERS, ApiHarness, Caller, api_harness

BURST = 3
RATE = 1.0  # a token a second: slow enough that a test's quick requests never see one come back
CONTACT = {"name": "Night desk", "phone": "+33612345678"}


@pytest.fixture(params=STORE_ADAPTERS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path, adapter=request.param, api_key_burst=BURST, api_key_rate=RATE) as harness:
        yield harness


async def new_key(api: ApiHarness, admin: Caller, role: str = "admin", name: str = "dispatch") -> dict[str, str]:
    created = await api.http.post("/api/v1/api-keys", headers=admin.headers, json={"name": name, "role": role})
    assert created.status_code == 201, created.text
    return {"X-API-Key": created.json()["key"]}


async def listed_keys(api: ApiHarness, admin: Caller) -> dict[str, dict]:
    answer = await api.http.get("/api/v1/api-keys", headers=admin.headers)
    assert answer.status_code == 200, answer.text
    return {key["name"]: key for key in answer.json()["items"]}


async def test_the_request_past_the_burst_gets_429_and_changes_nothing(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    key = await new_key(api, admin)
    for left in reversed(range(BURST)):
        created = await api.http.post("/api/v1/contacts", headers=key, json=CONTACT)
        assert created.status_code == 201, created.text
        assert (created.headers["RateLimit-Limit"], created.headers["RateLimit-Remaining"]) == (str(BURST), str(left))
    refused = await api.http.post("/api/v1/contacts", headers=key, json=CONTACT | {"name": "one too many"})
    assert refused.status_code == 429
    assert refused.json() == {"detail": "too many requests for this API key; retry later"}
    assert refused.headers["Retry-After"] == "1"  # a token a second
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["RateLimit-Reset"]) <= BURST
    names = [contact.name for contact in await api.store.contacts(admin.tenant_id)]
    assert names == [CONTACT["name"]] * BURST  # the refused request never reached the route


async def test_after_retry_after_the_key_works_again(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    key = await new_key(api, admin, role="viewer")
    answers = [await api.http.get("/api/v1/devices", headers=key) for _ in range(BURST + 1)]
    assert [a.status_code for a in answers] == [200] * BURST + [429]
    await asyncio.sleep(int(answers[-1].headers["Retry-After"]) + 0.1)
    again = await api.http.get("/api/v1/devices", headers=key)
    assert again.status_code == 200 and again.headers["RateLimit-Remaining"] == "0"
    assert (await api.http.get("/api/v1/devices", headers=key)).status_code == 429  # one token came back, not more


async def test_another_key_and_signed_in_users_are_not_affected(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin, viewer = await api.caller(tenant), await api.caller(tenant, "viewer")
    spent, other = await new_key(api, admin, name="spent"), await new_key(api, admin, name="other")
    other_tenant_key = await new_key(api, await api.caller(await api.tenant()), name="elsewhere")
    while (await api.http.get("/api/v1/alerts", headers=spent)).status_code != 429:
        pass
    fresh = await api.http.get("/api/v1/alerts", headers=other)
    assert fresh.status_code == 200 and fresh.headers["RateLimit-Remaining"] == str(BURST - 1)
    assert (await api.http.get("/api/v1/alerts", headers=other_tenant_key)).status_code == 200
    for _ in range(3 * BURST):  # a user's bearer token has no such budget
        answer = await api.http.get("/api/v1/alerts", headers=viewer.headers)
        assert answer.status_code == 200 and "RateLimit-Limit" not in answer.headers
    assert (await api.http.get("/api/v1/alerts", headers=spent)).status_code == 429


async def test_every_answer_to_a_key_carries_its_budget(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    key = await new_key(api, admin)
    contact = (await api.http.post("/api/v1/contacts", headers=key, json=CONTACT)).json()
    forbidden = await api.http.get("/api/v1/api-keys", headers=key)  # keys never manage keys: still a request
    assert forbidden.status_code == 403 and forbidden.headers["RateLimit-Remaining"] == str(BURST - 2)
    deleted = await api.http.delete(f"/api/v1/contacts/{contact['id']}", headers=key)  # a route's own Response
    assert deleted.status_code == 204 and deleted.headers["RateLimit-Remaining"] == str(BURST - 3)
    assert deleted.headers["RateLimit-Limit"] == str(BURST) and int(deleted.headers["RateLimit-Reset"]) >= 1


async def test_unknown_and_revoked_keys_are_401_and_spend_nothing(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    key = await new_key(api, admin)
    key_id = (await listed_keys(api, admin))["dispatch"]["id"]
    assert (await api.http.delete(f"/api/v1/api-keys/{key_id}", headers=admin.headers)).status_code == 204
    for headers in (key, {"X-API-Key": "sw_" + "x" * 40}, {"X-API-Key": "not a key"}):
        for _ in range(BURST + 1):
            answer = await api.http.get("/api/v1/devices", headers=headers)
            assert answer.status_code == 401 and "detail" in answer.json() and "RateLimit-Limit" not in answer.headers


async def test_last_used_at_moves_when_the_key_is_used(api: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(key_limits, "LAST_USED_EVERY_S", 0.5)  # instead of a minute
    admin = await api.caller(await api.tenant())
    used = await new_key(api, admin, role="viewer", name="used")
    await new_key(api, admin, name="unused")
    keys = await listed_keys(api, admin)
    assert keys["used"]["last_used_at"] is None and keys["unused"]["last_used_at"] is None

    before = time.time()
    assert (await api.http.get("/api/v1/auth/me", headers=used)).status_code == 200
    keys = await listed_keys(api, admin)
    first = datetime.fromisoformat(keys["used"]["last_used_at"])
    assert keys["used"]["last_used_at"].endswith("Z") and before - 1 <= first.timestamp() <= time.time() + 1
    assert keys["unused"]["last_used_at"] is None

    assert (await api.http.get("/api/v1/devices", headers=used)).status_code == 200
    assert (await listed_keys(api, admin))["used"]["last_used_at"] == keys["used"]["last_used_at"]  # within the span

    await asyncio.sleep(0.6)
    assert (await api.http.get("/api/v1/devices", headers=used)).status_code == 200
    keys = await listed_keys(api, admin)
    assert datetime.fromisoformat(keys["used"]["last_used_at"]) > first
    assert keys["unused"]["last_used_at"] is None


async def test_the_key_list_pages(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    for n in range(5):
        await new_key(api, admin, name=f"key {n}")
    first = (await api.http.get("/api/v1/api-keys", headers=admin.headers, params={"limit": 2})).json()
    assert [k["name"] for k in first["items"]] == ["key 0", "key 1"] and first["next_cursor"]
    rest = await api.http.get(
        "/api/v1/api-keys", headers=admin.headers, params={"limit": 10, "cursor": first["next_cursor"]}
    )
    assert [k["name"] for k in rest.json()["items"]] == ["key 2", "key 3", "key 4"]
    assert rest.json()["next_cursor"] is None
    for params in ({"cursor": "-1"}, {"cursor": "abc"}, {"limit": 0}, {"limit": 100_000}):
        answer = await api.http.get("/api/v1/api-keys", headers=admin.headers, params=params)
        assert answer.status_code == 422 and isinstance(answer.json()["detail"], list)


async def test_the_spec_documents_the_budget(api: ApiHarness) -> None:
    spec = (await api.http.get("/api/v1/openapi.json")).json()
    for path, method in (("/api/v1/devices", "get"), ("/api/v1/auth/me", "get"), ("/api/v1/contacts", "post")):
        limited = spec["paths"][path][method]["responses"]["429"]
        assert {"Retry-After", "RateLimit-Remaining"} <= set(limited["headers"]), path
        assert limited["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
    key = spec["components"]["schemas"]["ApiKeyOut"]["properties"]
    assert "last_used_at" in key
    assert "next_cursor" in spec["components"]["schemas"]["ApiKeyList"]["properties"]


async def test_spreading_requests_over_api_processes_gains_nothing(
    tmp_path: Path,
    redis_server: str,  # noqa: F811  (the fixture imported above)
) -> None:
    # Two API processes of the distributed mode: one store, each its own client of the same Redis.
    async with api_harness(tmp_path, api_key_burst=BURST, api_key_rate=RATE) as first:
        caches = [RedisCache(redis_server), RedisCache(redis_server)]
        for cache in caches:
            await cache.start()
        try:
            # Sessions need no more than an empty cache: a bearer token is refused only when marked revoked.
            first.context.cache = caches[0]
            second_context = dataclasses.replace(first.context, cache=caches[1])
            runtime = Runtime([], lambda: first.settings)
            second = create_app(second_context, runtime, live_updates=False).other_asgi_app
            admin = await first.caller(await first.tenant())
            key = await new_key(first, admin)
            key_id = (await first.store.api_keys(admin.tenant_id))[0].id
            await caches[0].delete(f"{key_limits.BUCKET_PREFIX}{key_id}")  # ids repeat between tests on this server

            transport = httpx.ASGITransport(app=second)
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as other_process:
                clients = [first.http, other_process] * (BURST + 1)
                answers = [await client.get("/api/v1/devices", headers=key) for client in clients]
            assert sorted(a.status_code for a in answers) == [200] * BURST + [429] * (BURST + 2)
        finally:
            for cache in caches:
                await cache.close()

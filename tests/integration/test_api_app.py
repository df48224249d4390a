"""The API application as a whole: health endpoints kept, OpenAPI, JSON errors everywhere, API keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.authn.apikeys import PREFIX_LENGTH, hash_api_key, new_api_key
from services.authn.tokens import decode_access_token, revoke_session
from shared.store import StoreUnavailable
from tests.helpers.api import ApiHarness, api_harness

IMEI = "356307042441013"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path) as harness:
        yield harness


async def test_health_endpoints_are_kept(api: ApiHarness) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "alive"}
    assert (await api.http.get("/readyz")).status_code == 200
    assert (await api.http.get("/metrics")).status_code == 200


async def test_openapi_documents_every_path_and_both_credentials(api: ApiHarness) -> None:
    spec = (await api.http.get("/api/v1/openapi.json")).json()
    assert spec["info"]["title"] == "solewatch API" and spec["info"]["version"]
    paths = spec["paths"]
    for path, methods in {
        "/api/v1/devices": {"get", "post"},
        "/api/v1/devices/{imei}": {"get"},
        "/api/v1/devices/{imei}/positions": {"get"},
        "/api/v1/alerts": {"get"},
        "/api/v1/alerts/{alert_id}": {"get"},
        "/api/v1/alerts/{alert_id}/ack": {"post"},
        "/api/v1/alerts/{alert_id}/resolve": {"post"},
        "/api/v1/contacts": {"get", "post"},
        "/api/v1/contacts/{contact_id}": {"delete"},
        "/api/v1/auth/token": {"post"},
    }.items():
        assert methods <= set(paths[path]), path
    schemes = spec["components"]["securitySchemes"].values()
    assert {"http"} == {s["type"] for s in schemes if s.get("scheme") == "bearer"}
    assert any(s["type"] == "apiKey" and s["name"] == "X-API-Key" for s in schemes)
    assert len(paths["/api/v1/devices"]["get"]["security"]) == 2  # either credential
    assert "examples" in spec["components"]["schemas"]["PositionOut"]
    assert "/healthz" not in paths
    docs = await api.http.get("/api/v1/docs")
    assert docs.status_code == 200 and "/api/v1/openapi.json" in docs.text


async def test_unknown_paths_and_methods_answer_json(api: ApiHarness) -> None:
    missing = await api.http.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    wrong_method = await api.http.put("/api/v1/devices")
    assert wrong_method.status_code == 405 and "detail" in wrong_method.json()


async def test_validation_errors_never_echo_the_input(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.post(
        "/api/v1/devices", headers=admin.headers, json={"imei": "secret-looking-value", "name": "x"}
    )
    assert response.status_code == 422
    assert "secret-looking-value" not in response.text
    assert response.json()["detail"][0]["loc"] == ["body", "imei"]


async def test_a_store_outage_is_503_with_retry_after(api: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    viewer = await api.caller(await api.tenant(), "viewer")

    async def unavailable(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("disk I/O error")

    monkeypatch.setattr(api.store, "devices", unavailable)
    response = await api.http.get("/api/v1/devices", headers=viewer.headers)
    assert response.status_code == 503 and response.headers["Retry-After"].isdigit()
    assert "detail" in response.json() and "disk" not in response.text


async def test_an_unexpected_error_is_a_bare_500(api: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    viewer = await api.caller(await api.tenant(), "viewer")

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.store, "contacts", broken)
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        response = await http.get("/api/v1/contacts", headers=viewer.headers)
    assert response.status_code == 500 and response.json() == {"detail": "internal server error"}
    assert "secret" not in response.text and "Traceback" not in response.text


async def test_a_logged_out_session_is_refused(api: ApiHarness) -> None:
    viewer = await api.caller(await api.tenant(), "viewer")
    assert (await api.http.get("/api/v1/devices", headers=viewer.headers)).status_code == 200
    await revoke_session(api.settings, api.cache, decode_access_token(api.settings, viewer.token).session_id)
    assert (await api.http.get("/api/v1/devices", headers=viewer.headers)).status_code == 401


async def test_partner_api_keys_see_their_tenant_only(api: ApiHarness) -> None:
    tenant = await api.tenant()
    await api.device(tenant, IMEI)
    await api.device(await api.tenant())
    key = new_api_key()
    await api.store.create_api_key(
        tenant_id=tenant, name="partner", prefix=key[:PREFIX_LENGTH], key_hash=hash_api_key(key), role="viewer"
    )
    listed = await api.http.get("/api/v1/devices", headers={"X-API-Key": key})
    assert listed.status_code == 200 and [d["imei"] for d in listed.json()["items"]] == [IMEI]
    refused = await api.http.post(
        "/api/v1/devices", headers={"X-API-Key": key}, json={"imei": "490154203237518", "name": "x"}
    )
    assert refused.status_code == 403
    assert (await api.http.get("/api/v1/devices", headers={"X-API-Key": "sw_" + "x" * 40})).status_code == 401

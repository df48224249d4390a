"""/api/v1/alerts: listing, detail with timeline, acknowledge and resolve; tenant isolation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.protocols.xsole import CommandCode
from tests.helpers.api import T0, ApiHarness, api_harness

IMEI = "356307042441013"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path) as harness:
        yield harness


async def test_alert_paths_need_credentials(api: ApiHarness) -> None:
    for method, path in [
        ("GET", "/api/v1/alerts"),
        ("GET", "/api/v1/alerts/1"),
        ("POST", "/api/v1/alerts/1/ack"),
        ("POST", "/api/v1/alerts/1/resolve"),
    ]:
        response = await api.http.request(method, path)
        assert response.status_code == 401 and "detail" in response.json(), (method, path)


async def test_list_is_newest_first_filtered_and_paginated(api: ApiHarness) -> None:
    tenant = await api.tenant()
    alice, bob = await api.device(tenant, IMEI), await api.device(tenant)
    alerts = [await api.alert(alice if i % 2 else bob, kind="fall" if i == 3 else "sos", ts=T0 + i) for i in range(7)]
    await api.alert(await api.device(await api.tenant()))  # another tenant's
    viewer = await api.caller(tenant, "viewer")

    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.http.get("/api/v1/alerts", headers=viewer.headers, params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [alert.id for alert in reversed(alerts)]

    by_imei = (await api.http.get("/api/v1/alerts", headers=viewer.headers, params={"imei": IMEI})).json()["items"]
    assert [item["id"] for item in by_imei] == [alerts[5].id, alerts[3].id, alerts[1].id]
    first = by_imei[-1]
    assert first["imei"] == IMEI and first["kind"] == "sos" and first["status"] == "open"
    assert first["ts"] == "2026-01-01T00:00:01Z" and first["lat"] == 43.6163 and first["battery"] == 80

    supervisor = await api.caller(tenant, "supervisor")
    await api.http.post(f"/api/v1/alerts/{alerts[2].id}/ack", headers=supervisor.headers)
    await api.http.post(f"/api/v1/alerts/{alerts[4].id}/resolve", headers=supervisor.headers)
    for status, expected in [("acknowledged", [alerts[2].id]), ("resolved", [alerts[4].id])]:
        items = (await api.http.get("/api/v1/alerts", headers=viewer.headers, params={"status": status})).json()[
            "items"
        ]
        assert [item["id"] for item in items] == expected
    still_open = (await api.http.get("/api/v1/alerts", headers=viewer.headers, params={"status": "open"})).json()
    assert len(still_open["items"]) == 5


@pytest.mark.parametrize("params", [{"status": "closed"}, {"imei": "123"}, {"limit": 0}, {"cursor": "xyz"}])
async def test_list_refuses_junk_parameters(api: ApiHarness, params: dict[str, Any]) -> None:
    viewer = await api.caller(await api.tenant(), "viewer")
    response = await api.http.get("/api/v1/alerts", headers=viewer.headers, params=params)
    assert response.status_code == 422 and "detail" in response.json()


async def test_another_tenants_alerts_do_not_exist(api: ApiHarness) -> None:
    alert = await api.alert(await api.device(await api.tenant(), IMEI))
    outsider = await api.caller(await api.tenant())
    assert (await api.http.get("/api/v1/alerts", headers=outsider.headers)).json()["items"] == []
    for method, path in [
        ("GET", "/api/v1/alerts/{}"),
        ("POST", "/api/v1/alerts/{}/ack"),
        ("POST", "/api/v1/alerts/{}/resolve"),
    ]:
        foreign = await api.http.request(method, path.format(alert.id), headers=outsider.headers)
        unknown = await api.http.request(method, path.format(999999), headers=outsider.headers)
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.json() == unknown.json()
    assert (await api.store.alert(alert.tenant_id, alert.id)).status == "open"  # type: ignore[union-attr]
    assert api.commands.sent == []


async def test_acknowledge_then_resolve_with_timeline(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    alert = await api.alert(device)
    supervisor = await api.caller(tenant, "supervisor")

    acked = await api.http.post(f"/api/v1/alerts/{alert.id}/ack", headers=supervisor.headers)
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert body["id"] == alert.id and body["status"] == "acknowledged"
    assert body["acknowledged_by"] == supervisor.email and body["acknowledged_at"].endswith("Z")
    assert api.commands.sent == [(device.id, CommandCode.ALARM_ACKNOWLEDGED, b"")]

    again = await api.http.post(f"/api/v1/alerts/{alert.id}/ack", headers=supervisor.headers)
    assert again.status_code == 200 and again.json()["acknowledged_at"] == body["acknowledged_at"]
    assert len(api.commands.sent) == 1  # the insole is told once

    resolved = await api.http.post(
        f"/api/v1/alerts/{alert.id}/resolve", headers=supervisor.headers, json={"note": "worker called back, all fine"}
    )
    assert resolved.status_code == 200, resolved.text
    assert (
        resolved.json()["status"] == "resolved" and resolved.json()["resolution_note"] == "worker called back, all fine"
    )
    assert resolved.json()["resolved_by"] == supervisor.email

    late_ack = await api.http.post(f"/api/v1/alerts/{alert.id}/ack", headers=supervisor.headers)
    assert late_ack.status_code == 409 and isinstance(late_ack.json()["detail"], str)

    detail = (await api.http.get(f"/api/v1/alerts/{alert.id}", headers=supervisor.headers)).json()
    assert detail["status"] == "resolved" and detail["imei"] == IMEI
    actions = [entry["action"] for entry in detail["timeline"]]
    assert actions[0] == "raised" and "acknowledged" in actions and actions[-1] == "resolved"
    assert all(entry["at"].endswith("Z") for entry in detail["timeline"])
    assert detail["timeline"][-1]["actor"] == supervisor.email


async def test_resolve_needs_no_body_and_skips_acknowledging(api: ApiHarness) -> None:
    tenant = await api.tenant()
    alert = await api.alert(await api.device(tenant))
    admin = await api.caller(tenant, "admin")
    resolved = await api.http.post(f"/api/v1/alerts/{alert.id}/resolve", headers=admin.headers)
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    assert resolved.json()["resolution_note"] is None


@pytest.mark.parametrize("action", ["ack", "resolve"])
async def test_viewers_cannot_change_alerts(api: ApiHarness, action: str) -> None:
    tenant = await api.tenant()
    alert = await api.alert(await api.device(tenant))
    viewer = await api.caller(tenant, "viewer")
    response = await api.http.post(f"/api/v1/alerts/{alert.id}/{action}", headers=viewer.headers)
    assert response.status_code == 403 and "detail" in response.json()
    assert (await api.store.alert(tenant, alert.id)).status == "open"  # type: ignore[union-attr]


@pytest.mark.parametrize("body", [b'{"note": ', b'{"note": 5}', b'"note"', b'{"note": "' + b"x" * 2001 + b'"}'])
async def test_resolve_refuses_a_bad_body(api: ApiHarness, body: bytes) -> None:
    tenant = await api.tenant()
    alert = await api.alert(await api.device(tenant))
    admin = await api.caller(tenant)
    response = await api.http.post(
        f"/api/v1/alerts/{alert.id}/resolve", content=body, headers=admin.headers | {"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and "detail" in response.json()


@pytest.mark.parametrize("alert_id", ["abc", "0", "-1", str(2**64)])
async def test_malformed_alert_ids_are_invalid(api: ApiHarness, alert_id: str) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.post(f"/api/v1/alerts/{alert_id}/ack", headers=admin.headers)
    assert response.status_code == 422 and "detail" in response.json()

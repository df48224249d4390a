"""/api/v1/geofences: shapes, validation, roles and tenant isolation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.api import ApiHarness, api_harness

SQUARE = [[7.05, 43.61], [7.06, 43.61], [7.06, 43.62], [7.05, 43.62], [7.05, 43.61]]
DEPOT = {
    "name": "Depot",
    "geometry": {"type": "Circle", "center": [7.0553, 43.6163], "radius_m": 250},
    "alert_on": ["exit"],
}
QUARRY = {"name": "Quarry", "geometry": {"type": "Polygon", "coordinates": [SQUARE]}, "alert_on": ["enter", "exit"]}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path) as harness:
        yield harness


async def test_geofence_paths_need_credentials(api: ApiHarness) -> None:
    assert (await api.http.get("/api/v1/geofences")).status_code == 401
    assert (await api.http.post("/api/v1/geofences", json=DEPOT)).status_code == 401
    assert (await api.http.get("/api/v1/geofences/1")).status_code == 401
    assert (await api.http.delete("/api/v1/geofences/1")).status_code == 401


async def test_add_list_get_and_delete(api: ApiHarness) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    worker = await api.device(tenant)

    depot = await api.http.post("/api/v1/geofences", headers=admin.headers, json=DEPOT)
    assert depot.status_code == 201, depot.text
    body = depot.json()
    assert body["name"] == "Depot" and body["devices"] == [] and body["alert_on"] == ["exit"]
    assert body["geometry"] == {"type": "Circle", "center": [7.0553, 43.6163], "radius_m": 250.0}
    assert body["created_at"].endswith("Z")

    quarry = await api.http.post(
        "/api/v1/geofences", headers=admin.headers, json=QUARRY | {"devices": [worker.imei, worker.imei]}
    )
    assert quarry.status_code == 201, quarry.text
    assert quarry.json()["geometry"] == {"type": "Polygon", "coordinates": [SQUARE]}
    assert quarry.json()["devices"] == [worker.imei] and quarry.json()["alert_on"] == ["enter", "exit"]

    viewer = await api.caller(tenant, "viewer")
    listed = (await api.http.get("/api/v1/geofences", headers=viewer.headers)).json()["items"]
    assert [g["id"] for g in listed] == [body["id"], quarry.json()["id"]]
    one = await api.http.get(f"/api/v1/geofences/{quarry.json()['id']}", headers=viewer.headers)
    assert one.status_code == 200 and one.json() == quarry.json()

    deleted = await api.http.delete(f"/api/v1/geofences/{body['id']}", headers=admin.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await api.http.get(f"/api/v1/geofences/{body['id']}", headers=viewer.headers)).status_code == 404
    again = await api.http.delete(f"/api/v1/geofences/{body['id']}", headers=admin.headers)
    assert again.status_code == 404 and again.json() == {"detail": "geofence not found"}
    remaining = (await api.http.get("/api/v1/geofences", headers=viewer.headers)).json()["items"]
    assert [g["name"] for g in remaining] == ["Quarry"]


async def test_defaults_and_holes(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    hole = [[7.054, 43.614], [7.056, 43.614], [7.056, 43.616, 12.0], [7.054, 43.614]]
    response = await api.http.post(
        "/api/v1/geofences",
        headers=admin.headers,
        json={"name": "  Yard  ", "geometry": {"type": "Polygon", "coordinates": [SQUARE, hole]}},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Yard" and body["alert_on"] == ["exit"] and body["devices"] == []
    assert body["geometry"]["coordinates"][1][2] == [7.056, 43.616]  # the altitude is dropped


def _polygon(*rings: list[Any]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        (_polygon(SQUARE[:-1]), "not closed"),
        (_polygon([[7.05, 43.61], [7.06, 43.61], [7.05, 43.61]]), "at least 4"),
        (_polygon([[7.05, 43.61], [7.06, 43.61], [7.07, 43.61], [7.05, 43.61]]), "no area"),
        (_polygon([[7.05, 43.61], [7.06, 43.61], [7.05, 43.61], [7.05, 43.61]]), "no area"),
        (_polygon([[43.61, 7.05], [43.62, 7.05], [43.62, 97.06], [43.61, 7.05]]), "latitude 97.06"),
        (_polygon([[190.0, 43.61], [7.06, 43.61], [7.06, 43.62], [190.0, 43.61]]), "longitude 190.0"),
        (_polygon(), "at least 1"),
        (_polygon([[7.05], [7.06, 43.61], [7.06, 43.62], [7.05]]), "at least 2"),
        ({"type": "Circle", "center": [7.05, 43.61], "radius_m": 0}, "greater than 0"),
        ({"type": "Circle", "center": [7.05, 43.61], "radius_m": -5}, "greater than 0"),
        ({"type": "Circle", "center": [7.05, 43.61], "radius_m": 5_000_000}, "less than or equal to 100000"),
        ({"type": "Circle", "center": [7.05, 95.0], "radius_m": 100}, "latitude 95.0"),
        ({"type": "Circle", "center": [7.05, 43.61]}, "Field required"),
        ({"type": "Point", "coordinates": [7.05, 43.61]}, "Circle"),
        ({"coordinates": [SQUARE]}, "type"),
    ],
)
async def test_invalid_geometries_are_refused_with_a_reason(
    api: ApiHarness, geometry: dict[str, Any], message: str
) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.post("/api/v1/geofences", headers=admin.headers, json=DEPOT | {"geometry": geometry})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(message in error["msg"] for error in errors), errors
    assert all(error["loc"][:2] == ["body", "geometry"] for error in errors)
    assert (await api.http.get("/api/v1/geofences", headers=admin.headers)).json()["items"] == []


@pytest.mark.parametrize(
    "change",
    [
        {"name": ""},
        {"name": "x" * 101},
        {"alert_on": []},
        {"alert_on": ["leave"]},
        {"alert_on": "exit"},
        {"devices": ["12345"]},
        {"devices": "356307042441013"},
        {"colour": "red"},
    ],
)
async def test_invalid_fields_are_refused(api: ApiHarness, change: dict[str, Any]) -> None:
    admin = await api.caller(await api.tenant())
    response = await api.http.post("/api/v1/geofences", headers=admin.headers, json=DEPOT | change)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)


async def test_devices_must_be_the_tenants_own(api: ApiHarness) -> None:
    tenant, other = await api.tenant(), await api.tenant()
    admin = await api.caller(tenant)
    mine, theirs = await api.device(tenant), await api.device(other)
    response = await api.http.post(
        "/api/v1/geofences",
        headers=admin.headers,
        json=DEPOT | {"devices": [mine.imei, theirs.imei, "356307049999990"]},
    )
    assert response.status_code == 422
    assert [(e["loc"], e["msg"]) for e in response.json()["detail"]] == [
        (["body", "devices", 1], f"no device {theirs.imei} in this tenant"),
        (["body", "devices", 2], "no device 356307049999990 in this tenant"),
    ]
    assert (await api.http.get("/api/v1/geofences", headers=admin.headers)).json()["items"] == []


@pytest.mark.parametrize("role", ["viewer", "supervisor"])
async def test_only_admins_change_geofences(api: ApiHarness, role: str) -> None:
    tenant = await api.tenant()
    admin = await api.caller(tenant)
    geofence = (await api.http.post("/api/v1/geofences", headers=admin.headers, json=DEPOT)).json()
    caller = await api.caller(tenant, role)  # type: ignore[arg-type]
    assert (await api.http.post("/api/v1/geofences", headers=caller.headers, json=QUARRY)).status_code == 403
    assert (await api.http.delete(f"/api/v1/geofences/{geofence['id']}", headers=caller.headers)).status_code == 403
    assert (await api.http.get(f"/api/v1/geofences/{geofence['id']}", headers=caller.headers)).status_code == 200
    assert len((await api.http.get("/api/v1/geofences", headers=caller.headers)).json()["items"]) == 1


async def test_another_tenants_geofences_do_not_exist(api: ApiHarness) -> None:
    owner = await api.caller(await api.tenant())
    geofence = (await api.http.post("/api/v1/geofences", headers=owner.headers, json=DEPOT)).json()
    outsider = await api.caller(await api.tenant())
    assert (await api.http.get("/api/v1/geofences", headers=outsider.headers)).json()["items"] == []
    assert (await api.http.get(f"/api/v1/geofences/{geofence['id']}", headers=outsider.headers)).status_code == 404
    assert (await api.http.delete(f"/api/v1/geofences/{geofence['id']}", headers=outsider.headers)).status_code == 404
    assert (await api.http.get(f"/api/v1/geofences/{geofence['id']}", headers=owner.headers)).status_code == 200


async def test_the_openapi_spec_documents_geofences(api: ApiHarness) -> None:
    spec = (await api.http.get("/api/v1/openapi.json")).json()
    assert {"get", "post"} <= set(spec["paths"]["/api/v1/geofences"])
    assert {"get", "delete"} <= set(spec["paths"]["/api/v1/geofences/{geofence_id}"])
    assert "geofences" in {tag["name"] for tag in spec["tags"]}

"""The answers the spec documents are the answers given, in one shape per status.

tests/e2e/test_schemathesis.py checks the whole spec against a running server;
these pin down, quickly and by name, what that run found first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.api import ApiHarness, api_harness

IMEI = "356307042441013"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path) as harness:
        yield harness


async def _spec(api: ApiHarness) -> dict:
    return (await api.http.get("/api/v1/openapi.json")).json()


async def test_a_missing_device_is_a_documented_404(api: ApiHarness) -> None:
    viewer = await api.caller(await api.tenant(), "viewer")
    paths = (await _spec(api))["paths"]
    for path in (f"/api/v1/devices/{IMEI}", f"/api/v1/devices/{IMEI}/positions"):
        assert (await api.http.get(path, headers=viewer.headers)).status_code == 404
        documented = paths[path.replace(IMEI, "{imei}")]["get"]["responses"]["404"]
        assert documented["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}


async def test_every_operation_with_a_body_documents_400_and_413(api: ApiHarness) -> None:
    operations = [
        (path, method, operation)
        for path, item in (await _spec(api))["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]
    assert len(operations) >= 9
    for path, method, operation in operations:
        assert {"400", "413"} <= set(operation["responses"]), f"{method.upper()} {path}"
    admin = await api.caller(await api.tenant())
    unparsable = await api.http.post(
        "/api/v1/devices", headers={**admin.headers, "Content-Type": "multipart/form-data"}, content=b"--x\r\n"
    )
    assert unparsable.status_code in (400, 422) and "detail" in unparsable.json()


async def test_every_422_is_the_documented_list_of_invalid_fields(api: ApiHarness) -> None:
    spec = await _spec(api)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if "422" in operation["responses"]:
                schema = operation["responses"]["422"]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/HTTPValidationError"}, f"{method.upper()} {path}"
    admin = await api.caller(await api.tenant())
    for answer in (
        await api.http.get("/api/v1/devices", headers=admin.headers, params={"cursor": "not-a-cursor"}),
        await api.http.get("/api/v1/alerts", headers=admin.headers, params={"cursor": "W10"}),
        await api.http.put(
            "/api/v1/escalation-policy", headers=admin.headers, json={"steps": [{"contacts": [999], "wait_s": 60}]}
        ),
    ):
        assert answer.status_code == 422
        detail = answer.json()["detail"]
        assert isinstance(detail, list) and all({"loc", "msg", "type"} <= set(error) for error in detail), detail


async def test_a_wrong_method_names_every_method_of_the_path_in_allow(api: ApiHarness) -> None:
    spec = await _spec(api)
    for path in ("/api/v1/devices", "/api/v1/api-keys", "/api/v1/contacts"):
        answer = await api.http.options(path)
        assert answer.status_code == 405 and "detail" in answer.json()
        allowed = {method.strip() for method in answer.headers["Allow"].split(",")}
        assert allowed == {method.upper() for method in spec["paths"][path]}, path

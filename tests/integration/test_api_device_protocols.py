"""/api/v1/devices for the other trackers (CONTRACT §10): a protocol and a model at registration, the
IMEI rules of each protocol, no token for a device that carries no secret; on both storage adapters."""

from __future__ import annotations

import pytest

from shared.store.devices import MODEL_MAX_LENGTH
from tests.helpers.api import ApiHarness

IMEI = "356307042441013"


@pytest.fixture
async def api(harness: ApiHarness) -> ApiHarness:
    return harness  # once per storage adapter


async def _register(api: ApiHarness, headers: dict[str, str], **body: object):  # type: ignore[no-untyped-def]
    return await api.http.post("/api/v1/devices", headers=headers, json={"name": "Guard", **body})


async def test_a_tracker_is_registered_without_a_token_and_shown_with_its_protocol_and_model(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    response = await _register(api, admin.headers, imei=IMEI, protocol="gt06", model="Concox GT06N")

    assert response.status_code == 201, response.text
    body = response.json()
    assert "token" not in body
    assert (body["imei"], body["protocol"], body["model"]) == (IMEI, "gt06", "Concox GT06N")
    stored = await api.store.device_by_imei(IMEI)
    assert stored is not None and (stored.protocol, stored.model, stored.token_hash) == ("gt06", "Concox GT06N", b"")
    one = (await api.http.get(f"/api/v1/devices/{IMEI}", headers=admin.headers)).json()
    listed = (await api.http.get("/api/v1/devices", headers=admin.headers)).json()["items"]
    assert (one["protocol"], one["model"]) == ("gt06", "Concox GT06N")
    assert [(d["imei"], d["protocol"], d["model"]) for d in listed] == [(IMEI, "gt06", "Concox GT06N")]
    [record] = await api.store.audit_log(admin.tenant_id, action="device.create")
    assert record.entry.target_id == IMEI and record.entry.detail["protocol"] == "gt06"


async def test_an_insole_still_gets_its_token_and_is_xsole_by_default(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    body = (await _register(api, admin.headers, imei=IMEI)).json()

    assert len(body["token"]) == 32 and (body["protocol"], body["model"]) == ("xsole", None)


@pytest.mark.parametrize(
    ("protocol", "imei", "created"),
    [
        ("h02", "4209951530", True),  # 10 digits: an H02 serial
        ("watch", "123456789012", True),
        ("watch", "123456789012345", True),
        ("teltonika", "352093081234567", True),
        ("xsole", "35630704244101", False),  # 14 digits
        ("gt06", "4209951530", False),  # 10 digits: not a GT06 IMEI
        ("teltonika", "3520930812345678", False),  # 16
        ("h02", "420995153", False),  # 9
        ("watch", "12345678901a", False),
    ],
)
async def test_each_protocol_has_its_imei_rules(api: ApiHarness, protocol: str, imei: str, created: bool) -> None:
    admin = await api.caller(await api.tenant())
    response = await _register(api, admin.headers, imei=imei, protocol=protocol)

    assert response.status_code == (201 if created else 422), response.text
    assert (await api.store.device_by_imei(imei) is not None) is created
    if created:  # and the device's routes take its identifier
        assert (await api.http.get(f"/api/v1/devices/{imei}", headers=admin.headers)).status_code == 200


async def test_an_imei_of_the_wrong_length_for_its_protocol_gets_a_clear_422(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    response = await _register(api, admin.headers, imei="4209951530", protocol="gt06")

    assert response.status_code == 422
    assert "a gt06 device's imei is 15 digits" in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"protocol": "tk103"},
        {"protocol": ""},
        {"protocol": "gt06", "model": ""},
        {"protocol": "gt06", "model": "x" * (MODEL_MAX_LENGTH + 1)},
        {"protocol": "gt06", "model": 5},
    ],
)
async def test_an_unknown_protocol_or_a_bad_model_is_refused(api: ApiHarness, body: dict[str, object]) -> None:
    admin = await api.caller(await api.tenant())
    response = await _register(api, admin.headers, imei=IMEI, **body)

    assert response.status_code == 422, response.text
    assert await api.store.device_by_imei(IMEI) is None


async def test_a_tracker_has_no_token_to_rotate(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    await _register(api, admin.headers, imei=IMEI, protocol="teltonika")

    response = await api.http.post(f"/api/v1/devices/{IMEI}/token", headers=admin.headers)

    assert response.status_code == 409 and "no secret" in response.json()["detail"]
    stored = await api.store.device_by_imei(IMEI)
    assert stored is not None and stored.token_hash == b""
    assert await api.store.audit_log(admin.tenant_id, action="device.token_rotate") == []

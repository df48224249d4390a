"""The fleet's routes (CONTRACT §5) over both storage adapters: rename, disable, rotate, retire and
erase, commands with their status and expiry; roles, tenant isolation, hostile input, audit.

The listener is not here (FakeCommands records which devices were revoked);
tests/integration/test_listener_fleet.py shows the effect on real connections.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.protocols.xsole import CommandCode, CommandResult
from shared.store import FrameRecord
from tests.helpers.api import ApiHarness, position
from tests.helpers.stored import commit_frames

IMEI = "356307042441013"


@pytest.fixture
async def api(harness: ApiHarness) -> ApiHarness:
    return harness  # once per storage adapter


async def audit_actions(api: ApiHarness, tenant_id: int) -> list[tuple[str, str | None, dict[str, Any]]]:
    return [(r.entry.action, r.entry.target_id, r.entry.detail) for r in reversed(await api.store.audit_log(tenant_id))]


async def register(api: ApiHarness, headers: dict[str, str], imei: str = IMEI, name: str = "Alice") -> str:
    response = await api.http.post("/api/v1/devices", headers=headers, json={"imei": imei, "name": name})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def test_registering_is_audited(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    await register(api, admin.headers)
    assert await audit_actions(api, admin.tenant_id) == [("device.create", IMEI, {"name": "Alice"})]


async def test_rename_disable_and_enable(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    await register(api, admin.headers)

    renamed = await api.http.patch(f"/api/v1/devices/{IMEI}", headers=admin.headers, json={"name": "  Bea "})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Bea" and renamed.json()["imei"] == IMEI
    assert api.commands.revoked == []  # a new name leaves the connection alone

    disabled = await api.http.patch(f"/api/v1/devices/{IMEI}", headers=admin.headers, json={"enabled": False})
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert not (await api.store.device_by_imei(IMEI)).enabled  # type: ignore[union-attr]
    assert api.commands.revoked == [IMEI]  # the listener holding it closes its connection

    enabled = await api.http.patch(f"/api/v1/devices/{IMEI}", headers=admin.headers, json={"enabled": True})
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    assert (await api.store.device_by_imei(IMEI)).enabled  # type: ignore[union-attr]
    assert (await api.http.get(f"/api/v1/devices/{IMEI}", headers=admin.headers)).json()["name"] == "Bea"
    unchanged = await api.http.patch(f"/api/v1/devices/{IMEI}", headers=admin.headers, json={})
    assert unchanged.status_code == 200 and unchanged.json()["name"] == "Bea"  # nothing asked: no change, no entry

    assert [(a, d) for a, _, d in await audit_actions(api, admin.tenant_id)] == [
        ("device.create", {"name": "Alice"}),
        ("device.update", {"name": "Bea"}),
        ("device.update", {"enabled": False}),
        ("device.update", {"enabled": True}),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"enabled": "maybe"},
        {"enabled": 0},
        {"enabled": "false"},
        {"imei": "356307042441021"},
        [],
    ],
)
async def test_a_bad_update_changes_nothing(api: ApiHarness, body: object) -> None:
    admin = await api.caller(await api.tenant())
    await register(api, admin.headers)
    response = await api.http.patch(f"/api/v1/devices/{IMEI}", headers=admin.headers, json=body)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()
    device = await api.store.device_by_imei(IMEI)
    assert device is not None and (device.name, device.enabled) == ("Alice", True)
    assert len(await api.store.audit_log(admin.tenant_id)) == 1  # the registration alone


async def test_rotating_the_token(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    old = await register(api, admin.headers)
    response = await api.http.post(f"/api/v1/devices/{IMEI}/token", headers=admin.headers)
    assert response.status_code == 200, response.text
    new = response.json()["token"]
    assert re.fullmatch(r"[0-9a-f]{32}", new) and new != old
    assert response.json() == {"token": new}  # the secret and nothing else
    assert api.commands.revoked == [IMEI]
    assert (await audit_actions(api, admin.tenant_id))[-1] == ("device.token_rotate", IMEI, {})


async def test_retire_then_register_again_shows_none_of_the_old_history(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    await register(api, admin.headers)
    old = await api.store.device_by_imei(IMEI)
    assert old is not None
    await api.store_positions(old, [position(1), position(2, 1767225660)])
    await api.alert(old)
    sent = await api.http.post(f"/api/v1/devices/{IMEI}/commands", headers=admin.headers, json={"command": "reboot"})
    assert sent.status_code == 202

    retired = await api.http.delete(f"/api/v1/devices/{IMEI}", headers=admin.headers)
    assert retired.status_code == 204 and retired.content == b""
    assert api.commands.revoked == [IMEI]
    for path in ("", "/positions", "/commands", "/settings"):
        gone = await api.http.get(f"/api/v1/devices/{IMEI}{path}", headers=admin.headers)
        assert gone.status_code == 404, (path, gone.text)
        assert "detail" in gone.json()
    assert (
        await api.http.patch(f"/api/v1/devices/{IMEI}", headers=admin.headers, json={"name": "x"})
    ).status_code == 404
    assert (await api.http.delete(f"/api/v1/devices/{IMEI}", headers=admin.headers)).status_code == 404
    assert (await api.http.get("/api/v1/devices", headers=admin.headers)).json()["items"] == []
    # Not erased: the tenant's alert history keeps the old alert.
    assert len((await api.http.get("/api/v1/alerts", headers=admin.headers)).json()["items"]) == 1

    await register(api, admin.headers, name="Carol")
    device = (await api.http.get(f"/api/v1/devices/{IMEI}", headers=admin.headers)).json()
    assert (device["name"], device["last_seen"], device["battery"], device["last_position"]) == (
        "Carol",
        None,
        None,
        None,
    )
    for path in ("/positions", "/commands"):
        page = (await api.http.get(f"/api/v1/devices/{IMEI}{path}", headers=admin.headers)).json()
        assert page == {"items": [], "next_cursor": None}, path
    alerts = await api.http.get("/api/v1/alerts", params={"imei": IMEI}, headers=admin.headers)
    assert alerts.json()["items"] == []
    assert [a for a, _, _ in await audit_actions(api, admin.tenant_id)] == [
        "device.create",
        "device.command",
        "device.delete",
        "device.create",
        "positions.read",  # the new device's (empty) history, read above
    ]
    assert (await audit_actions(api, admin.tenant_id))[2] == ("device.delete", IMEI, {"erase": False})


async def test_erase_deletes_what_was_stored_about_the_device(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    await register(api, admin.headers)
    device = await api.store.device_by_imei(IMEI)
    assert device is not None
    await api.store_positions(device, [position(1)])
    await api.alert(device)

    erased = await api.http.delete(f"/api/v1/devices/{IMEI}", params={"erase": "true"}, headers=admin.headers)
    assert erased.status_code == 204
    assert (await api.http.get("/api/v1/alerts", headers=admin.headers)).json()["items"] == []
    assert await api.store.positions(device.id) == []
    assert (await audit_actions(api, admin.tenant_id))[-1] == ("device.delete", IMEI, {"erase": True})
    bad = await api.http.delete(f"/api/v1/devices/{IMEI}", params={"erase": "perhaps"}, headers=admin.headers)
    assert bad.status_code == 422


async def test_commands_from_queued_to_done(api: ApiHarness) -> None:
    tenant = await api.tenant()
    supervisor = await api.caller(tenant, "supervisor")
    device = await api.device(tenant, IMEI)

    queued = await api.http.post(
        f"/api/v1/devices/{IMEI}/commands",
        headers=supervisor.headers,
        json={"command": "set-interval", "args": "003C"},
    )
    assert queued.status_code == 202, queued.text
    body = queued.json()
    assert {k: body[k] for k in ("command", "args", "status")} == {
        "command": "set-interval",
        "args": "003c",
        "status": "queued",
    }
    assert body["created_at"].endswith("Z") and isinstance(body["id"], int)
    assert api.commands.sent == [(device.id, CommandCode.SET_INTERVAL, b"\x00\x3c")]
    locate = (
        await api.http.post(
            f"/api/v1/devices/{IMEI}/commands", headers=supervisor.headers, json={"command": "locate-now"}
        )
    ).json()

    # A listener sends the first, the device answers it.
    await api.store.mark_command_sent(body["id"], body["id"] & 0xFFFF)
    record = FrameRecord(device.id, device.tenant_id, IMEI, CommandResult(5, body["id"] & 0xFFFF, 0), 0.0)
    await commit_frames(api.store, [record])

    viewer = await api.caller(tenant, "viewer")
    page = (await api.http.get(f"/api/v1/devices/{IMEI}/commands", headers=viewer.headers)).json()
    assert [(c["id"], c["status"]) for c in page["items"]] == [(locate["id"], "queued"), (body["id"], "done")]
    done = page["items"][1]
    assert done["sent_at"] is not None and done["completed_at"] is not None
    assert page["items"][0]["sent_at"] is None and page["items"][0]["completed_at"] is None

    first = (await api.http.get(f"/api/v1/devices/{IMEI}/commands?limit=1", headers=viewer.headers)).json()
    assert [c["id"] for c in first["items"]] == [locate["id"]] and first["next_cursor"]
    second = (
        await api.http.get(
            f"/api/v1/devices/{IMEI}/commands",
            params={"limit": 1, "cursor": first["next_cursor"]},
            headers=viewer.headers,
        )
    ).json()
    assert [c["id"] for c in second["items"]] == [body["id"]] and second["next_cursor"] is None

    entries = await audit_actions(api, tenant)
    assert entries == [
        ("device.command", IMEI, {"command": "set-interval", "args": "003c", "id": body["id"]}),
        ("device.command", IMEI, {"command": "locate-now", "args": "", "id": locate["id"]}),
    ]


async def test_a_command_not_sent_within_the_ttl_reads_expired(api: ApiHarness) -> None:
    tenant = await api.tenant()
    supervisor = await api.caller(tenant, "supervisor")
    await api.device(tenant, IMEI)
    api.commands.ttl_s = 0.0  # SOLEWATCH_COMMAND_TTL elapsed at once
    response = await api.http.post(
        f"/api/v1/devices/{IMEI}/commands", headers=supervisor.headers, json={"command": "vibrate", "args": "02"}
    )
    assert response.status_code == 202 and response.json()["status"] == "queued"
    [item] = (await api.http.get(f"/api/v1/devices/{IMEI}/commands", headers=supervisor.headers)).json()["items"]
    assert item["status"] == "expired" and item["sent_at"] is None
    assert await api.store.commands_to_send(include_unanswered=True) == []


@pytest.mark.parametrize(
    "body",
    [
        {"command": "self-destruct"},
        {"command": "set-interval"},
        {"command": "set-interval", "args": "3c"},
        {"command": "set-interval", "args": "0000"},
        {"command": "set-interval", "args": "00003c"},
        {"command": "vibrate", "args": "0102"},
        {"command": "vibrate", "args": "00"},
        {"command": "reboot", "args": "01"},
        {"command": "locate-now", "args": "zz"},
        {"command": "locate-now", "args": "0"},
        {"command": "locate-now", "args": "00" * 256},
        {"command": "locate-now", "args": "003c"},
        {"command": "set-interval", "args": "00000"},
        {"command": "locate-now", "extra": 1},
        {"command": 1},
        {},
    ],
)
async def test_bad_commands_are_refused_and_queue_nothing(api: ApiHarness, body: dict[str, object]) -> None:
    tenant = await api.tenant()
    supervisor = await api.caller(tenant, "supervisor")
    device = await api.device(tenant, IMEI)
    response = await api.http.post(f"/api/v1/devices/{IMEI}/commands", headers=supervisor.headers, json=body)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)
    assert await api.store.device_commands(device.id) == []
    assert await api.store.audit_log(tenant) == []


async def test_roles(api: ApiHarness) -> None:
    tenant = await api.tenant()
    await api.device(tenant, IMEI)
    viewer, supervisor = await api.caller(tenant, "viewer"), await api.caller(tenant, "supervisor")
    command = {"command": "locate-now"}
    assert (
        await api.http.post(f"/api/v1/devices/{IMEI}/commands", headers=viewer.headers, json=command)
    ).status_code == 403
    assert (await api.http.get(f"/api/v1/devices/{IMEI}/commands", headers=viewer.headers)).status_code == 200
    for caller in (viewer, supervisor):
        for method, path, json in (
            ("PATCH", "", {"enabled": False}),
            ("POST", "/token", None),
            ("DELETE", "", None),
        ):
            response = await api.http.request(
                method, f"/api/v1/devices/{IMEI}{path}", headers=caller.headers, json=json
            )
            assert response.status_code == 403, (method, path, response.text)
    device = await api.store.device_by_imei(IMEI)
    assert device is not None and device.enabled
    assert api.commands.revoked == [] and await api.store.audit_log(tenant) == []
    assert (await api.http.post(f"/api/v1/devices/{IMEI}/token")).status_code == 401


async def test_another_tenants_device_is_not_found(api: ApiHarness) -> None:
    ours, theirs = await api.tenant(), await api.tenant()
    await api.device(theirs, IMEI)
    admin = await api.caller(ours)
    for method, path, json in (
        ("PATCH", "", {"name": "mine"}),
        ("POST", "/token", None),
        ("DELETE", "", None),
        ("POST", "/commands", {"command": "reboot"}),
        ("GET", "/commands", None),
    ):
        response = await api.http.request(method, f"/api/v1/devices/{IMEI}{path}", headers=admin.headers, json=json)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json() == {"detail": "device not found"}
    device = await api.store.device_by_imei(IMEI)
    assert device is not None and (device.name, device.enabled) == ("worker", True)
    assert await api.store.device_commands(device.id) == []
    assert api.commands.revoked == []

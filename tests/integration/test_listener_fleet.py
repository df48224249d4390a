"""The fleet's changes (CONTRACT §5) reaching a connected insole, all-in-one: each goes through
the real HTTP API of an embedded solewatch and is seen on a real XSole TCP connection.

A rotated token: the open connection closes, the old token gets LOGIN_ACK 2, the new one logs in.
Disabled: closed, then 3; enabled again: in. Retired: closed, then 1; registered again: a new
device. A command past SOLEWATCH_COMMAND_TTL never reaches a device that connects later, not
even after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from services.components import embedded_runtime
from shared.http import HttpServer
from shared.protocols.xsole import Command, CommandResult, LoginAck
from tests.conftest import EmbeddedSolewatch, embedded_settings

IMEI = "356307042441013"
ADMIN = {"email": "admin@acme.example", "password": "correct horse battery staple"}


@pytest.fixture
def solewatch_settings(tmp_path):
    return embedded_settings(
        tmp_path / "data",
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
        jwt_secret="fleet-test-" + "x" * 40,
        device_login_backoff=0,  # refused LOGINs close at once: the test waits for no hold
    )


@pytest.fixture
async def http(solewatch: EmbeddedSolewatch) -> AsyncIterator[httpx.AsyncClient]:
    [server] = [c for c in solewatch.runtime.components if isinstance(c, HttpServer)]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        token = (await client.post("/api/v1/auth/token", json=ADMIN)).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


async def register(http: httpx.AsyncClient, imei: str = IMEI) -> bytes:
    response = await http.post("/api/v1/devices", json={"imei": imei, "name": "Alice"})
    assert response.status_code == 201, response.text
    return bytes.fromhex(response.json()["token"])


async def login_status(solewatch: EmbeddedSolewatch, token: bytes, imei: str = IMEI) -> int:
    """A new connection's LOGIN_ACK status; a refused connection must also be closed."""
    client = await solewatch.device()
    ack = await client.login(imei, token)
    assert isinstance(ack, LoginAck)
    if ack.status != 0:
        assert await client.closed_by_server()
    else:
        await client.close()
    return ack.status


async def test_a_rotated_token_closes_the_connection_and_only_the_new_one_logs_in(solewatch, http) -> None:
    old = await register(http)
    device = await solewatch.device()
    assert (await device.login(IMEI, old)).status == 0

    response = await http.post(f"/api/v1/devices/{IMEI}/token")
    assert response.status_code == 200
    assert await device.closed_by_server()

    assert await login_status(solewatch, old) == 2
    assert await login_status(solewatch, bytes.fromhex(response.json()["token"])) == 0


async def test_a_disabled_device_is_disconnected_and_refused_until_enabled(solewatch, http) -> None:
    token = await register(http)
    device = await solewatch.device()
    assert (await device.login(IMEI, token)).status == 0

    assert (await http.patch(f"/api/v1/devices/{IMEI}", json={"enabled": False})).status_code == 200
    assert await device.closed_by_server()
    assert await login_status(solewatch, token) == 3

    assert (await http.patch(f"/api/v1/devices/{IMEI}", json={"enabled": True})).status_code == 200
    assert await login_status(solewatch, token) == 0


async def test_a_rename_leaves_the_connection_open(solewatch, http) -> None:
    token = await register(http)
    device = await solewatch.device()
    assert (await device.login(IMEI, token)).status == 0
    assert (await http.patch(f"/api/v1/devices/{IMEI}", json={"name": "Bea"})).status_code == 200
    position = device.position()
    await device.send(position)
    assert await device.recv_acks(1) == {position.seq: 0}
    await device.close()


async def test_a_retired_imei_gets_1_and_registered_again_is_a_new_device(solewatch, http) -> None:
    old = await register(http)
    device = await solewatch.device()
    assert (await device.login(IMEI, old)).status == 0
    position = device.position()
    await device.send(position)
    assert await device.recv_acks(1) == {position.seq: 0}

    assert (await http.delete(f"/api/v1/devices/{IMEI}")).status_code == 204
    assert await device.closed_by_server()
    assert await login_status(solewatch, old) == 1

    new = await register(http)
    assert await login_status(solewatch, old) == 2  # the old secret is not the new device's
    assert await login_status(solewatch, new) == 0
    positions = (await http.get(f"/api/v1/devices/{IMEI}/positions")).json()
    assert positions == {"items": [], "next_cursor": None}


async def test_a_command_is_sent_and_answered_through_the_api(solewatch, http) -> None:
    token = await register(http)
    device = await solewatch.device()
    assert (await device.login(IMEI, token)).status == 0

    queued = await http.post(f"/api/v1/devices/{IMEI}/commands", json={"command": "vibrate", "args": "02"})
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    command = await device.recv()
    assert isinstance(command, Command) and (command.cmd, command.args) == (3, b"\x02")
    result = CommandResult(device.next_seq(), command.seq, 0)
    await device.send(result)
    assert await device.recv_acks(1) == {result.seq: 0}
    [item] = (await http.get(f"/api/v1/devices/{IMEI}/commands")).json()["items"]
    assert item["status"] == "done" and item["sent_at"] and item["completed_at"]
    await device.close()


@pytest.mark.parametrize("restart", [False, True], ids=["same process", "after a restart"])
async def test_an_expired_command_never_reaches_a_device_that_connects_later(
    solewatch, http, solewatch_settings, restart: bool
) -> None:
    token = await register(http)
    short = solewatch_settings.model_copy(update={"command_ttl": 0.3})
    solewatch.listener.settings = short  # the registry reads the listener's settings at each command
    expiring = await http.post(f"/api/v1/devices/{IMEI}/commands", json={"command": "reboot"})
    assert expiring.status_code == 202
    solewatch.listener.settings = solewatch_settings
    await asyncio.sleep(0.5)  # past its TTL, still unsent
    lasting = await http.post(f"/api/v1/devices/{IMEI}/commands", json={"command": "locate-now"})

    if restart:
        await solewatch.runtime.shutdown()
        runtime, listener = embedded_runtime(solewatch_settings, lambda: solewatch_settings)
        await runtime.start()
        solewatch = EmbeddedSolewatch(solewatch_settings, runtime, listener)
    try:
        device = await solewatch.device()
        assert (await device.login(IMEI, token)).status == 0
        command = await device.recv()
        assert isinstance(command, Command) and command.cmd == 1  # locate-now, never the reboot
        with pytest.raises(TimeoutError):
            await device.recv(timeout=solewatch_settings.command_poll_interval + 0.5)  # not from the poll either
        await device.close()
        expired = await solewatch.store.command(expiring.json()["id"])
        assert expired is not None and expired.sent_at is None
        assert (await solewatch.store.command(lasting.json()["id"])).status == "sent"  # type: ignore[union-attr]
    finally:
        if restart:
            await solewatch.runtime.shutdown()


async def test_a_change_whose_announcement_was_lost_still_closes_the_connection(solewatch, http) -> None:
    # The store changed but the listener was never told (in the distributed mode: a listener
    # reconnecting to RabbitMQ while `device_revoked` went out). Its periodic check against the
    # store (every LOGIN_RECHECK_S; run once here) closes what no longer stands, and only that.
    store, registry = solewatch.store, solewatch.listener.registry
    tokens = {imei: await register(http, imei) for imei in ("356307042441013", "356307042441021", "356307042441039")}
    kept = await register(http, "356307042441047")
    devices = {}
    for imei, token in [*tokens.items(), ("356307042441047", kept)]:
        devices[imei] = await solewatch.device()
        assert (await devices[imei].login(imei, token)).status == 0
    assert await registry.recheck_logins_once() == []  # nothing changed: nobody is cut off

    rotated, disabled, retired = [await store.device_by_imei(imei) for imei in tokens]
    assert rotated and disabled and retired
    assert await store.set_device_token(imei=rotated.imei, token_hash=b"\x01" * 32)
    assert await store.update_device(disabled.id, enabled=False)
    assert await store.retire_device(retired.id)

    assert sorted(await registry.recheck_logins_once()) == sorted(tokens)
    for imei in tokens:
        assert await devices[imei].closed_by_server(), imei
    assert await login_status(solewatch, tokens[disabled.imei], disabled.imei) == 3
    assert "356307042441047" in registry.online  # the unchanged one stays connected
    await devices["356307042441047"].close()

"""A revoked device over MQTT (docs/mqtt.md): its login session ends in the shared cache, so its
next frame gets ACK 3 and its LOGIN is checked against the store as it now is. Against a real
Mosquitto, with the bridge and devices of test_mqtt_ingest.py.
"""

from __future__ import annotations

import secrets

from shared.protocols.xsole import Ack
from shared.store import hash_device_token
from tests.integration.test_mqtt_ingest import (  # noqa: F401  (fixtures, registered by import)
    IMEI,
    broker,
    connect,
    eventually,
    ingest,
    prefix,
)


async def test_a_rotated_token_ends_the_session_and_only_the_new_one_logs_in(solewatch, ingest, connect) -> None:  # noqa: F811
    old = await solewatch.register(IMEI)
    device = await connect(IMEI)
    assert (await device.login(old)).status == 0
    new = secrets.token_bytes(16)

    # What POST /devices/{imei}/token does: store the new secret, then revoke through the CommandSender.
    assert await solewatch.store.set_device_token(imei=IMEI, token_hash=hash_device_token(new))
    await solewatch.listener.revoke_device(IMEI)
    await eventually(lambda: _offline(solewatch))

    position = device.position()
    await device.publish(position)
    assert await device.recv() == Ack(position.seq, 3)  # the session is gone: log in again
    assert (await device.login(old)).status == 2
    assert (await device.login(new)).status == 0
    await device.publish(position)
    assert await device.recv_acks(1) == {position.seq: 0}


async def test_a_disabled_device_gets_3_on_its_next_login(solewatch, ingest, connect) -> None:  # noqa: F811
    token = await solewatch.register(IMEI)
    device = await connect(IMEI)
    assert (await device.login(token)).status == 0
    stored = await solewatch.store.device_by_imei(IMEI)
    await solewatch.store.update_device(stored.id, enabled=False)
    await solewatch.listener.revoke_device(IMEI)

    heartbeat = device.heartbeat()
    await device.publish(heartbeat)
    assert await device.recv() == Ack(heartbeat.seq, 3)
    assert (await device.login(token)).status == 3


async def _offline(solewatch) -> bool:
    return IMEI not in solewatch.listener.online

"""Issue 12 item 6 over MQTT: a topic whose LOGINs keep failing is held, as a TCP connection is.

There is no connection to hold open on a topic, so while a hold lasts the
topic's LOGINs get no answer at all, and the device tries again later (the
topic is the device's own, behind the broker's ACLs). Absence of a reply is
shown as in test_mqtt_ingest.py: the next frame received is the answer to
what came after.
"""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from shared.protocols.xsole import Login, LoginAck
from tests.conftest import embedded_settings
from tests.integration.test_mqtt_ingest import (  # noqa: F401  (fixtures, used by name)
    IMEI,
    broker,
    connect,
    eventually,
    ingest,
    prefix,
)


@pytest.fixture
def solewatch_settings(tmp_path):
    return embedded_settings(tmp_path / "data", device_login_backoff=1.0)


def held_logins() -> float:
    return REGISTRY.get_sample_value("listener_mqtt_messages_dropped_total", {"reason": "login_backoff"}) or 0.0


async def test_a_topic_failing_its_logins_is_held_then_the_right_token_gets_in(solewatch, ingest, connect):  # noqa: F811
    token = await solewatch.register(IMEI)
    wrong = bytes(b ^ 0xFF for b in token)
    device = await connect(IMEI)
    for seq in (1, 2):  # the second consecutive failure holds the topic for a second
        await device.publish(Login(seq, IMEI, 0x0102, wrong))
        reply = await device.recv()
        assert isinstance(reply, LoginAck) and (reply.seq, reply.status) == (seq, 2)
    dropped = held_logins()

    await device.publish(Login(3, IMEI, 0x0102, wrong))  # during the hold: not even checked
    await eventually(lambda: _true(held_logins() > dropped))
    await eventually(lambda: _not_held(solewatch))
    await device.publish(Login(4, IMEI, 0x0102, token))

    reply = await device.recv()
    assert isinstance(reply, LoginAck) and (reply.seq, reply.status) == (4, 0)  # nothing came for seq 3


async def _true(value: bool) -> bool:
    return value


async def _not_held(solewatch) -> bool:
    return not await solewatch.listener.login_backoff.held(IMEI)

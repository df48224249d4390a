"""MQTT held to contract §1 as TCP is: one answer per frame, never two, never none.

- A LOGIN gets a LOGIN_ACK wherever it comes in a message (over MQTT it is a
  device logging in again, not an unsupported type).
- Past the backlog limit, or when the MQTT client's own queue overflows,
  frames get ACK 4 (busy, retry later) instead of nothing.
- A reply whose publish may have reached the broker is never published again
  (an ACK twice for one frame); a COMMAND may be (the device answers its seq).
- Both transports go through the one ingest step, and close for the same
  reasons under the same metric labels.
"""

from __future__ import annotations

import asyncio

import aiomqtt
from prometheus_client import REGISTRY

from services.listener import mqtt
from services.listener.connection import DeviceConnection
from services.listener.link import CloseReason
from services.listener.mqtt_device import MqttDevice as MqttLink
from shared.protocols.xsole import Ack, AckStatus, Heartbeat, Login, LoginAck, encode
from shared.protocols.xsole.messages import encode_ack
from tests.integration.test_mqtt_ingest import (  # noqa: F401  # fixtures, used by name
    IMEI,
    broker,
    connect,
    ingest,
    prefix,
    stored_seqs,
)


async def test_a_login_after_other_frames_in_a_message_gets_its_login_ack(solewatch, ingest, connect):  # noqa: F811
    token = await solewatch.register(IMEI)
    device = await connect(IMEI)
    assert (await device.login(token)).status == 0
    position = device.position()
    login = Login(device.next_seq(), IMEI, 0x0102, token)

    await device.publish(position, login)

    replies = [await device.recv(), await device.recv()]
    assert Ack(position.seq, 0) in replies
    assert [(r.seq, r.status) for r in replies if isinstance(r, LoginAck)] == [(login.seq, 0)]
    assert not [r for r in replies if isinstance(r, Ack) and r.seq == login.seq]  # no ACK 2 for it
    later = device.position()
    await device.publish(later)
    assert await device.recv_acks(1) == {later.seq: 0}


async def test_past_the_backlog_limit_frames_get_ack_4_and_their_retransmission_is_stored(
    solewatch,
    ingest,  # noqa: F811
    connect,  # noqa: F811
    monkeypatch,
):
    token = await solewatch.register(IMEI)
    device = await connect(IMEI)
    assert (await device.login(token)).status == 0
    positions = [device.position() for _ in range(3)]

    monkeypatch.setattr(mqtt, "LOCAL_BACKLOG_LIMIT", 0)  # every message now finds the backlog full
    await device.publish(*positions)
    assert await device.recv_acks(3) == {p.seq: 4 for p in positions}
    assert await stored_seqs(solewatch) == []

    monkeypatch.setattr(mqtt, "LOCAL_BACKLOG_LIMIT", 10_000)
    await device.publish(*positions)  # what firmware does with ACK 4: send it again later
    assert await device.recv_acks(3) == {p.seq: 0 for p in positions}
    assert await stored_seqs(solewatch) == sorted(p.seq for p in positions)


async def test_an_overflowing_client_queue_answers_busy(solewatch, mqtt_server, prefix):  # noqa: F811
    bridge = mqtt.MqttIngest(
        solewatch.settings.model_copy(update={"mqtt_url": mqtt_server, "mqtt_topic_prefix": prefix}),
        solewatch.listener,
    )
    queue = bridge._incoming_queue_type()(maxsize=1)
    frames = b"".join(encode(Heartbeat(seq, 1767225600, 87, -71)) for seq in (7, 8))
    topic = f"{prefix}/{IMEI}/up"
    queue.put_nowait(aiomqtt.Message(topic, frames, 1, False, 1, None))
    queue.put_nowait(aiomqtt.Message(topic, frames, 1, False, 2, None))  # no room: answered, not dropped

    assert queue.qsize() == 1
    assert list(bridge._outgoing) == [
        (f"{prefix}/{IMEI}/down", encode_ack(7, AckStatus.BUSY) + encode_ack(8, AckStatus.BUSY), False)
    ]


class _FlakyClient:
    """Publishes fail the first time (the broker connection broke mid-publish), then succeed."""

    def __init__(self) -> None:
        self.published: list[bytes] = []
        self.fail = True

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        self.published.append(payload)
        if self.fail:
            raise aiomqtt.MqttError("connection lost")


async def test_a_reply_cut_by_a_lost_connection_is_not_published_again_but_a_command_is(
    solewatch,
    mqtt_server,
    prefix,  # noqa: F811
    monkeypatch,
):
    bridge = mqtt.MqttIngest(
        solewatch.settings.model_copy(update={"mqtt_url": mqtt_server, "mqtt_topic_prefix": prefix}),
        solewatch.listener,
    )
    monkeypatch.setattr(mqtt, "RECONNECT_MIN_S", 0.01)
    client = _FlakyClient()
    ack, command = encode_ack(5, 0), b"COMMAND frame"
    bridge.publish(IMEI, ack)
    bridge.publish(IMEI, command, resend=True)
    publisher = asyncio.create_task(bridge._publish(client))  # type: ignore[arg-type]
    try:
        while len(client.published) < 2:
            await asyncio.sleep(0.005)
        client.fail = False
        while len(client.published) < 3 or bridge._outgoing:
            await asyncio.sleep(0.005)
    finally:
        publisher.cancel()
    assert client.published == [ack, command, command]  # the ACK once, whatever happened to it


async def test_tcp_and_mqtt_go_through_the_one_ingest_step(solewatch, ingest, connect, monkeypatch):  # noqa: F811
    step = solewatch.listener.ingest
    pumped: set[type] = set()
    logins: set[type] = set()
    pump, login = step.pump, step.login

    def spy_pump(link, now):  # type: ignore[no-untyped-def]
        pumped.add(type(link))
        return pump(link, now)

    async def spy_login(link, event):  # type: ignore[no-untyped-def]
        logins.add(type(link))
        return await login(link, event)

    monkeypatch.setattr(step, "pump", spy_pump)
    monkeypatch.setattr(step, "login", spy_login)
    token = await solewatch.register(IMEI)
    other = "356307042441021"
    tcp_token = await solewatch.register(other)

    mqtt_device = await connect(IMEI)
    assert (await mqtt_device.login(token)).status == 0
    position = mqtt_device.position()
    await mqtt_device.publish(position)
    assert await mqtt_device.recv_acks(1) == {position.seq: 0}

    tcp_device = await solewatch.device()
    assert (await tcp_device.login(other, tcp_token)).status == 0
    tcp_position = tcp_device.position()
    await tcp_device.send(tcp_position)
    assert await tcp_device.recv_acks(1) == {tcp_position.seq: 0}
    await tcp_device.close()

    assert pumped == logins == {DeviceConnection, MqttLink}


def _closed(metric: str, reason: CloseReason) -> float:
    return REGISTRY.get_sample_value(metric, {"reason": reason.value}) or 0.0


async def test_a_refused_login_is_counted_under_one_reason_on_both_transports(solewatch, ingest, connect):  # noqa: F811
    await solewatch.register(IMEI)
    tcp_before = _closed("listener_connections_closed_total", CloseReason.LOGIN_REFUSED)
    mqtt_before = _closed("listener_mqtt_sessions_ended_total", CloseReason.LOGIN_REFUSED)

    tcp_device = await solewatch.device()
    assert (await tcp_device.login(IMEI, bytes(16))).status == 2
    mqtt_device = await connect(IMEI)
    assert (await mqtt_device.login(bytes(16))).status == 2

    async def counted() -> bool:
        return (
            _closed("listener_connections_closed_total", CloseReason.LOGIN_REFUSED) == tcp_before + 1
            and _closed("listener_mqtt_sessions_ended_total", CloseReason.LOGIN_REFUSED) == mqtt_before + 1
        )

    for _ in range(200):
        if await counted():
            break
        await asyncio.sleep(0.02)
    assert await counted()
    await tcp_device.close()

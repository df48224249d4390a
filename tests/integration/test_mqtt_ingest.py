"""XSole v1 over MQTT (services/listener/mqtt.py, docs/mqtt.md) against a real Mosquitto.

The embedded solewatch runs in the test's loop with its SQLite store; an
MqttIngest bridges it to the broker. Test devices are MQTT clients that
publish frames to `{prefix}/{imei}/up` and read replies on `{prefix}/{imei}/down`.
Each test gets its own topic prefix, so tests share the broker without
seeing each other's messages.

Absence of a reply is never waited for: a later message of the same device
gets its reply only after everything before it was handled, so "the next
frame received is X" shows that nothing was sent for what came before.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import aiomqtt
import pytest

from bench.xsole_client import FrameMaker
from services.listener.mqtt import MqttIngest
from shared.protocols.xsole import (
    Ack,
    BadCrc,
    Command,
    CommandResult,
    FrameBuffer,
    Login,
    LoginAck,
    decode,
    encode,
)
from tests.helpers.stored import count_stored

IMEI = "356307042441013"
OTHER_IMEI = "356307042441021"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll `check` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


class MqttDevice(FrameMaker):
    """A test insole speaking XSole v1 through the broker."""

    def __init__(self, client: aiomqtt.Client, prefix: str, imei: str):
        self.client = client
        self.prefix = prefix
        self.imei = imei
        self.frames: asyncio.Queue[object] = asyncio.Queue()
        self._seq = 0

    async def publish(self, *items: object, topic_imei: str | None = None) -> None:
        """One MQTT message holding these frames (events encoded here, bytes as they are)."""
        payload = b"".join(item if isinstance(item, bytes) else encode(item) for item in items)  # type: ignore[arg-type]
        await self.client.publish(f"{self.prefix}/{topic_imei or self.imei}/up", payload, qos=1)

    async def recv(self, timeout: float = 10.0) -> object:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def recv_acks(self, count: int, timeout: float = 10.0) -> dict[int, int]:
        """seq -> status of the next `count` ACKs (other frames are skipped)."""
        acks: dict[int, int] = {}
        received = 0
        while received < count:
            frame = await self.recv(timeout)
            if isinstance(frame, Ack):
                acks[frame.seq] = frame.status
                received += 1
        return acks

    async def login(self, token: bytes, *, imei: str | None = None) -> LoginAck:
        seq = self.next_seq()
        await self.publish(Login(seq, imei or self.imei, 0x0102, token))
        reply = await self.recv()
        assert isinstance(reply, LoginAck) and reply.seq == seq, reply
        return reply

    async def _read(self) -> None:
        async for message in self.client.messages:
            frames = FrameBuffer()
            frames.feed(message.payload)  # type: ignore[arg-type]
            while (frame := frames.next_frame()) is not None:
                if not isinstance(frame, BadCrc):
                    self.frames.put_nowait(decode(frame))


@pytest.fixture
def prefix() -> str:
    return f"test-{secrets.token_hex(4)}/xsole"


@pytest.fixture
def broker(mqtt_server: str) -> tuple[str, int]:
    url = urlsplit(mqtt_server)
    assert url.hostname and url.port
    return url.hostname, url.port


async def start_ingest(solewatch, url: str, prefix: str, **settings: object) -> MqttIngest:
    # Its own copy of the settings: the embedded runtime is left as the fixture built it.
    ingest = MqttIngest(
        solewatch.settings.model_copy(update={"mqtt_url": url, "mqtt_topic_prefix": prefix, **settings}),
        solewatch.listener,
    )
    await ingest.start()
    assert await ingest.check_ready() is None
    return ingest


async def stop_ingest(ingest: MqttIngest) -> None:
    await ingest.drain()
    await ingest.close()


@pytest.fixture
async def ingest(solewatch, mqtt_server: str, prefix: str) -> AsyncIterator[MqttIngest]:
    bridge = await start_ingest(solewatch, mqtt_server, prefix)
    try:
        yield bridge
    finally:
        await stop_ingest(bridge)


@pytest.fixture
async def connect(broker: tuple[str, int], prefix: str) -> AsyncIterator[Callable[[str], Awaitable[MqttDevice]]]:
    """`await connect(imei)`: a test device subscribed to its down topic."""
    async with contextlib.AsyncExitStack() as stack:
        readers: list[asyncio.Task[None]] = []

        async def make(imei: str) -> MqttDevice:
            client = await stack.enter_async_context(aiomqtt.Client(*broker, identifier=f"dev-{secrets.token_hex(6)}"))
            await client.subscribe(f"{prefix}/{imei}/down", qos=1)
            device = MqttDevice(client, prefix, imei)
            readers.append(asyncio.create_task(device._read()))
            return device

        try:
            yield make
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)


async def logged_in(solewatch, connect, imei: str = IMEI) -> MqttDevice:
    token = await solewatch.register(imei)
    device = await connect(imei)
    assert (await device.login(token)).status == 0
    return device


async def counts(solewatch, imei: str = IMEI) -> dict[str, int]:
    device = await solewatch.store.device_by_imei(imei)
    return await count_stored(solewatch.store, device.id)


async def stored_seqs(solewatch, imei: str = IMEI) -> list[int]:
    device = await solewatch.store.device_by_imei(imei)
    return sorted(row.seq for row in await solewatch.store.positions(device.id, limit=1000))


# -- login and storage -------------------------------------------------------------------------


async def test_positions_after_a_good_login_are_stored_and_acknowledged_on_the_down_topic(solewatch, ingest, connect):
    device = await logged_in(solewatch, connect)
    positions = [device.position(ts=int(time.time()) - 60 + i) for i in range(5)]

    await device.publish(*positions[:3])  # several frames in one message...
    await device.publish(positions[3])  # ...or one per message
    await device.publish(positions[4], device.heartbeat())

    acks = await device.recv_acks(6)
    assert acks == {frame.seq: 0 for frame in positions} | {positions[-1].seq + 1: 0}
    assert await stored_seqs(solewatch) == [p.seq for p in positions]
    assert (await counts(solewatch))["heartbeats"] == 1


async def test_login_and_positions_in_one_message_are_all_handled(solewatch, ingest, connect):
    token = await solewatch.register(IMEI)
    device = await connect(IMEI)
    login = Login(device.next_seq(), IMEI, 0x0102, token)
    positions = [device.position(ts=int(time.time()) - 10 + i) for i in range(3)]

    await device.publish(login, *positions)

    reply = await device.recv()
    assert isinstance(reply, LoginAck) and (reply.seq, reply.status) == (login.seq, 0)
    assert await device.recv_acks(3) == {p.seq: 0 for p in positions}
    assert await stored_seqs(solewatch) == [p.seq for p in positions]


async def test_wrong_token_gets_login_ack_2_and_nothing_is_stored(solewatch, ingest, connect):
    token = await solewatch.register(IMEI)
    wrong = bytes(b ^ 0xFF for b in token)
    device = await connect(IMEI)
    # A position glued behind the refused LOGIN must not slip in, nor one in the next message.
    await device.publish(Login(5, IMEI, 0x0102, wrong), device.position())
    later = device.position()
    await device.publish(later)

    refused = await device.recv()
    assert isinstance(refused, LoginAck) and (refused.seq, refused.status) == (5, 2)
    assert await device.recv() == Ack(later.seq, 3)  # nothing in between: the glued position got no reply
    assert await counts(solewatch) == {"positions": 0, "heartbeats": 0, "activities": 0, "alarms": 0}


async def test_unknown_and_disabled_devices_are_refused(solewatch, ingest, connect):
    unknown = await connect(IMEI)
    assert (await unknown.login(bytes(16))).status == 1

    token = await solewatch.register(OTHER_IMEI, enabled=False)
    disabled = await connect(OTHER_IMEI)
    assert (await disabled.login(token)).status == 3


async def test_frame_before_login_gets_ack_3_and_the_rest_of_the_message_is_dropped(solewatch, ingest, connect):
    token = await solewatch.register(IMEI)
    device = await connect(IMEI)
    first, second = device.heartbeat(), device.position()

    await device.publish(first, second)
    assert await device.recv() == Ack(first.seq, 3)

    # The device logs in, as after a refused TCP connection; nothing came for `second`.
    assert (await device.login(token)).status == 0
    assert await counts(solewatch) == {"positions": 0, "heartbeats": 0, "activities": 0, "alarms": 0}
    await device.publish(second)
    assert await device.recv_acks(1) == {second.seq: 0}


async def test_login_imei_must_be_the_topic_imei(solewatch, ingest, connect):
    await solewatch.register(IMEI)
    token = await solewatch.register(OTHER_IMEI)
    device = await connect(IMEI)  # publishes on IMEI's topic, logs in as OTHER_IMEI with its good token

    reply = await device.login(token, imei=OTHER_IMEI)
    assert reply.status == 1
    position = device.position()
    await device.publish(position)
    assert await device.recv() == Ack(position.seq, 3)  # not logged in on this topic

    # OTHER_IMEI was not logged in either: its own topic still wants a LOGIN.
    other = await connect(OTHER_IMEI)
    heartbeat = other.heartbeat()
    await other.publish(heartbeat)
    assert await other.recv() == Ack(heartbeat.seq, 3)
    assert await counts(solewatch, OTHER_IMEI) == {"positions": 0, "heartbeats": 0, "activities": 0, "alarms": 0}


async def test_a_login_on_an_open_session_starts_it_again(solewatch, ingest, connect):
    """A rebooted device logs in again on the same topic: accepted, not ACK 2."""
    token = await solewatch.register(IMEI)
    device = await connect(IMEI)
    assert (await device.login(token)).status == 0
    assert (await device.login(token)).status == 0
    position = device.position()
    await device.publish(position)
    assert await device.recv_acks(1) == {position.seq: 0}


# -- rules 3, 4 and 5 ---------------------------------------------------------------------------


async def test_a_retransmitted_frame_is_acknowledged_again_but_stored_once(solewatch, ingest, connect):
    device = await logged_in(solewatch, connect)
    position = device.position()

    for _ in range(3):
        await device.publish(position)
        assert await device.recv_acks(1) == {position.seq: 0}

    assert await stored_seqs(solewatch) == [position.seq]


async def test_invalid_values_get_ack_1_and_are_not_stored(solewatch, ingest, connect):
    device = await logged_in(solewatch, connect)
    bad, good = device.position(lat_e7=900_000_001), device.position()

    await device.publish(bad, good)

    assert await device.recv_acks(2) == {bad.seq: 1, good.seq: 0}
    assert await stored_seqs(solewatch) == [good.seq]


async def test_garbage_is_skipped_and_nothing_valid_is_lost(solewatch, ingest, connect):
    device = await logged_in(solewatch, connect)
    other = await logged_in(solewatch, connect, OTHER_IMEI)
    corrupt = bytearray(encode(device.position()))
    corrupt[-1] ^= 0xFF  # bad CRC: dropped without ACK
    before, after = device.position(ts=int(time.time()) - 5), device.position()

    await device.publish(b"\x00\x01garbage\xff" * 20)  # no frame at all: nothing to answer
    await device.publish(b"noise" + encode(before) + bytes(corrupt) + b"junk" + encode(after))

    assert await device.recv_acks(2) == {before.seq: 0, after.seq: 0}
    assert await stored_seqs(solewatch) == [before.seq, after.seq]
    # The other device went on undisturbed meanwhile.
    position = other.position()
    await other.publish(position)
    assert await other.recv_acks(1) == {position.seq: 0}


async def test_a_length_out_of_range_ends_the_session_and_the_device_logs_in_again(solewatch, ingest, connect):
    token = await solewatch.register(IMEI)
    device = await connect(IMEI)
    assert (await device.login(token)).status == 0
    stored = device.position(ts=int(time.time()) - 5)
    await device.publish(stored, b"XS\x01\x10\x04\x01\x00\x07")  # length 1025: nothing after it is trustworthy
    assert await device.recv_acks(1) == {stored.seq: 0}

    position = device.position()
    await device.publish(position)
    assert await device.recv() == Ack(position.seq, 3)
    assert (await device.login(token)).status == 0
    await device.publish(position)
    assert await device.recv_acks(1) == {position.seq: 0}
    assert await stored_seqs(solewatch) == [stored.seq, position.seq]


async def test_messages_on_foreign_topics_are_ignored_and_the_bridge_goes_on(solewatch, ingest, connect, prefix):
    device = await logged_in(solewatch, connect)
    position = device.position()

    await device.client.publish(f"{prefix}/not-an-imei/up", encode(position), qos=1)
    await device.publish(position)

    assert await device.recv_acks(1) == {position.seq: 0}


# -- downlink commands ------------------------------------------------------------------------


async def test_a_command_reaches_an_mqtt_device_and_its_result_is_recorded(solewatch, ingest, connect):
    device = await logged_in(solewatch, connect)
    device_id = (await solewatch.store.device_by_imei(IMEI)).id

    command_id = await solewatch.listener.send_command(device_id=device_id, cmd=3, args=b"\x02")

    command = await device.recv()
    assert isinstance(command, Command) and (command.cmd, command.args) == (3, b"\x02")
    assert (await solewatch.store.command(command_id)).status == "sent"
    result = CommandResult(device.next_seq(), command.seq, 0)
    await device.publish(result)
    assert await device.recv_acks(1) == {result.seq: 0}
    assert (await solewatch.store.command(command_id)).status == "done"


async def test_a_command_queued_while_offline_is_delivered_right_after_login(solewatch, ingest, connect):
    token = await solewatch.register(IMEI)
    device_id = (await solewatch.store.device_by_imei(IMEI)).id
    command_id = await solewatch.listener.queue_command(device_id=device_id, cmd=1)
    device = await connect(IMEI)

    assert (await device.login(token)).status == 0

    command = await device.recv()
    assert isinstance(command, Command) and command.cmd == 1
    assert (await solewatch.store.command(command_id)).status == "sent"


# -- the broker connection ----------------------------------------------------------------------


class CuttableProxy:
    """A TCP proxy in front of the broker that can cut every connection and refuse new ones."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}


async def test_ingestion_resumes_after_the_broker_connection_is_lost_and_nothing_acknowledged_is_lost(
    solewatch,
    connect,
    broker,
    prefix,
):
    proxy = CuttableProxy(broker)
    await proxy.start()
    bridge = await start_ingest(solewatch, proxy.url, prefix)
    try:
        device = await logged_in(solewatch, connect)
        sent = [device.position(ts=int(time.time()) - 100 + i) for i in range(10)]
        acked: dict[int, int] = {}
        await device.publish(*sent[:5])
        acked |= await device.recv_acks(5)

        await proxy.cut()
        await eventually(lambda: _not_ready(bridge))
        # Published meanwhile: the broker has no subscriber for them, so no ACK comes back.
        await device.publish(*sent[5:])
        await proxy.start()
        await eventually(lambda: _ready(bridge))

        # The device retransmits what was not acknowledged, as firmware does, until it is.
        while missing := [p for p in sent if acked.get(p.seq) != 0]:
            await device.publish(*missing)
            with contextlib.suppress(TimeoutError):
                acked |= await device.recv_acks(len(missing), timeout=2)

        assert await stored_seqs(solewatch) == [p.seq for p in sent]
        # The session outlived the broker connection: no new LOGIN was needed.
        heartbeat = device.heartbeat()
        await device.publish(heartbeat)
        assert await device.recv_acks(1) == {heartbeat.seq: 0}
    finally:
        await stop_ingest(bridge)
        with contextlib.suppress(AssertionError):
            await proxy.cut()


async def _ready(bridge: MqttIngest) -> bool:
    return await bridge.check_ready() is None


async def _not_ready(bridge: MqttIngest) -> bool:
    return await bridge.check_ready() is not None


async def test_two_listeners_in_one_shared_group_split_the_messages_and_share_the_sessions(
    solewatch,
    mqtt_server,
    connect,
    prefix,
):
    first = await start_ingest(solewatch, mqtt_server, prefix)
    second = await start_ingest(solewatch, mqtt_server, prefix)
    try:
        device = await logged_in(solewatch, connect)
        positions = [device.position(ts=int(time.time()) - 100 + i) for i in range(20)]
        for position in positions:  # one message each: the broker deals them out in turn
            await device.publish(position)

        # Each frame ACKed exactly once (a plain subscription would ACK each twice),
        # whichever process got it, and only the one that had the LOGIN knew it at first hand.
        acks = await device.recv_acks(len(positions))
        assert acks == {p.seq: 0 for p in positions}
        assert await stored_seqs(solewatch) == [p.seq for p in positions]
        assert first.devices.get(IMEI) and second.devices.get(IMEI)  # both took part
    finally:
        await stop_ingest(second)
        await stop_ingest(first)


async def test_when_the_listener_holding_a_device_stops_another_one_delivers_its_commands(
    solewatch,
    mqtt_server,
    connect,
    prefix,
):
    # A short idle timeout: sessions are refreshed, and orphans adopted, every tenth of it.
    bridges = [await start_ingest(solewatch, mqtt_server, prefix, idle_timeout=2) for _ in range(2)]
    try:
        device = await logged_in(solewatch, connect)
        owner = solewatch.listener.online[IMEI].ingest
        survivor = next(bridge for bridge in bridges if bridge is not owner)
        await stop_ingest(owner)
        assert IMEI not in solewatch.listener.online

        # The device goes on sending; the remaining listener adopts its session.
        while (holder := solewatch.listener.online.get(IMEI)) is None:
            heartbeat = device.heartbeat()
            await device.publish(heartbeat)
            assert await device.recv_acks(1) == {heartbeat.seq: 0}  # no new LOGIN needed
            await asyncio.sleep(0.05)
        assert holder.ingest is survivor

        device_id = (await solewatch.store.device_by_imei(IMEI)).id
        await solewatch.listener.send_command(device_id=device_id, cmd=1)
        command = await device.recv()
        assert isinstance(command, Command) and command.cmd == 1
    finally:
        for bridge in bridges:
            await stop_ingest(bridge)


async def test_drain_stores_and_acknowledges_what_was_received(solewatch, mqtt_server, connect, prefix, monkeypatch):
    committer = solewatch.listener.committer
    make_durable = committer._make_durable

    async def slow(records):
        await asyncio.sleep(0.2)  # so that frames are still in flight when the drain starts
        await make_durable(records)

    monkeypatch.setattr(committer, "_make_durable", slow)
    bridge = await start_ingest(solewatch, mqtt_server, prefix)
    device = await logged_in(solewatch, connect)
    positions = [device.position(ts=int(time.time()) - 100 + i) for i in range(50)]
    await device.publish(*positions)
    await eventually(lambda: _frames_in_flight(bridge))

    await stop_ingest(bridge)

    assert await device.recv_acks(len(positions)) == {p.seq: 0 for p in positions}
    assert await stored_seqs(solewatch) == [p.seq for p in positions]


async def _frames_in_flight(bridge: MqttIngest) -> bool:
    device = bridge.devices.get(IMEI)
    return device is not None and device.unacked > 0


async def test_a_silent_session_expires_and_the_device_must_log_in_again(solewatch, mqtt_server, connect, prefix):
    bridge = await start_ingest(solewatch, mqtt_server, prefix, idle_timeout=0.5)
    try:
        token = await solewatch.register(IMEI)
        device = await connect(IMEI)
        assert (await device.login(token)).status == 0
        assert IMEI in solewatch.listener.online

        await eventually(lambda: _offline(solewatch))  # rule 6: silent for longer than the idle timeout

        position = device.position()
        await device.publish(position)
        assert await device.recv() == Ack(position.seq, 3)
        assert (await device.login(token)).status == 0
        await device.publish(position)
        assert await device.recv_acks(1) == {position.seq: 0}
    finally:
        await stop_ingest(bridge)


async def _offline(solewatch) -> bool:
    return IMEI not in solewatch.listener.online

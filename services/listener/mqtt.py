"""XSole v1 over MQTT: frames published by devices or gateways, ingested like TCP ones.

Devices publish the very bytes they would write to the TCP port (one or more
whole frames per message) to `{prefix}/{imei}/up` with QoS 1; every reply
(LOGIN_ACK, ACK) and every downlink COMMAND goes back as a QoS 1 message to
`{prefix}/{imei}/down`. docs/mqtt.md is the operator's and firmware writer's
view; this module header is the implementer's.

How TCP's notions map onto a topic (contract §1):

- **Connection → session.** MQTT has no per-device connection, so a device's
  "connection" is its login session: created by an accepted LOGIN, kept in the
  listener's cache under `mqtt:session:{imei}` with the idle timeout as TTL
  (rule 6: a session silent for longer than that is gone), and ended wherever
  TCP would close the connection (refused LOGIN, frame before LOGIN, ten bad
  frames in a row, a length out of range). The next frame after an end gets
  ACK 3, and the device logs in again, as after a TCP reconnect.
- **Byte stream → messages.** Each message is parsed on its own by a fresh
  DeviceSession restored to the session's state: a message is whole frames,
  so a truncated tail must not swallow the start of the next message (it is
  dropped, unacknowledged, and the device retransmits it). A message that
  *starts* with a LOGIN starts a new session even while one is open: over MQTT
  a rebooted device cannot open a new connection, and the session would
  otherwise answer its LOGIN with ACK 2 (a second LOGIN on a connection).
- **Topic is identity.** Frames after the LOGIN carry no credentials; they are
  trusted because only the device may publish on its topic. That is the
  broker's job (ACLs, see docs/mqtt.md). The topic's IMEI must be the LOGIN's,
  else LOGIN_ACK 1: a device (or a gateway bug) cannot log in on, and get
  replies from, another device's topics.

Several listener processes may share one broker: they subscribe with a shared
subscription (`$share/{group}/{prefix}/+/up`) so each message reaches exactly
one of them, and since consecutive messages of one device may reach different
processes, the session lives in the shared cache, not in process memory.
The process that accepted the LOGIN *owns* the device: it alone has it in
`Listener.online`, so it alone sends it downlink commands (otherwise every
process's command poll would send each command once). An owner that stops
heart-beating its `mqtt:ingest:{id}` key is replaced by the next process that
refreshes the session.

Durability: aiomqtt (2.5.1) PUBACKs a QoS 1 message on receipt; manual
acknowledgement exists only in paho underneath (empicano/aiomqtt#345, draft
PR #346) and would buy nothing here: with a clean session the broker forgets
unacknowledged messages when our connection drops anyway, and a persistent
session with a shared subscription parks a dead process's share at the broker.
So, as over TCP, the XSole ACK on the down topic is the device's durability
signal (rule 2): ACK 0 is published only after the committer reports the frame
durable, and anything received but not yet durable when the broker connection
or the process goes is simply not acknowledged, and the device retransmits it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson
from prometheus_client import Counter, Gauge

from services.listener import metrics
from services.listener.connection import login_verdict
from shared.cache import Cache
from shared.cache.memory import MemoryCache
from shared.config import Settings
from shared.logging import get_logger
from shared.protocols.xsole import (
    AckStatus,
    Activity,
    Alarm,
    BadCrc,
    CommandResult,
    DeviceSession,
    FrameBuffer,
    FrameType,
    Heartbeat,
    Login,
    LoginStatus,
    Position,
    RawFrame,
    Reply,
    SessionState,
    XSoleProtocolError,
    validate,
)
from shared.protocols.xsole.messages import encode_ack
from shared.store.port import Device, FrameRecord

if TYPE_CHECKING:
    from services.listener.connection import DeviceConnection
    from services.listener.server import Listener

log = get_logger("solewatch.listener.mqtt")

# Reconnection: exponential backoff with jitter, so a broker restart is not met
# by every listener at the same instant.
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 10.0
KEEPALIVE_S = 20  # a silently dead broker link is noticed within ~1.5 keepalives
FIRST_CONNECT_WAIT_S = 5.0  # start() waits this long for the broker, then goes on not ready
# Replies are published in batches of concurrent QoS 1 publishes: one at a time
# costs a round trip each (~0.7 ms), thousands at once stall the client.
PUBLISH_BATCH = 64
# Bounds on what is held in memory. Past them a message is dropped *unacknowledged*
# (so the device retransmits it) rather than memory growing without limit.
INCOMING_QUEUE_LIMIT = 10_000  # in aiomqtt's queue, not yet taken by us
LOCAL_BACKLOG_LIMIT = 10_000  # taken, waiting for their device's turn; above it we stop taking
OUTGOING_LIMIT = 100_000  # replies waiting for the broker (e.g. while it is unreachable)
OWNER_TTL_S = 30.0
DRAIN_TIMEOUT_S = 10.0

SESSION_KEY = "mqtt:session:{imei}"
OWNER_KEY = "mqtt:ingest:{owner}"

connected = Gauge("listener_mqtt_connected", "1 while connected and subscribed to the MQTT broker")
connects = Counter("listener_mqtt_connects_total", "Connection attempts to the MQTT broker", ["result"])
messages_received = Counter("listener_mqtt_messages_received_total", "MQTT messages received on the up topics")
messages_dropped = Counter("listener_mqtt_messages_dropped_total",
                           "MQTT messages not processed (their frames get no ACK)", ["reason"])
publishes = Counter("listener_mqtt_publishes_total", "Messages published on the down topics", ["result"])
outgoing_queued = Gauge("listener_mqtt_outgoing_queued", "Messages waiting to be published on the down topics")
sessions_ended = Counter("listener_mqtt_sessions_ended_total", "Device sessions over MQTT ended by the listener",
                         ["reason"])

_KIND: dict[type, str] = {cls: cls.__name__.lower() for cls in (Heartbeat, Position, Activity, Alarm, CommandResult)}


class SessionInfo(NamedTuple):
    """A logged-in device as every listener process sees it (the cache's value)."""

    device_id: int
    tenant_id: int
    owner: str  # the MqttIngest instance that delivers the device's commands


class Sessions:
    """Login sessions in the cache, shared by every listener process on the broker."""

    def __init__(self, cache: Cache, ttl: Callable[[], float]):
        self.cache = cache
        self._ttl = ttl  # a callable: the idle timeout may change on reload

    async def get(self, imei: str) -> SessionInfo | None:
        raw = await self.cache.get(SESSION_KEY.format(imei=imei))
        if raw is None:
            return None
        try:
            value = orjson.loads(raw)
            return SessionInfo(int(value["device_id"]), int(value["tenant_id"]), str(value["owner"]))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: as if logged out, the device logs in again

    async def put(self, imei: str, info: SessionInfo) -> None:
        await self.cache.set(SESSION_KEY.format(imei=imei), orjson.dumps(info._asdict()), ttl=self._ttl())

    async def end(self, imei: str) -> None:
        await self.cache.delete(SESSION_KEY.format(imei=imei))

    async def owner_alive(self, owner: str) -> bool:
        return await self.cache.get(OWNER_KEY.format(owner=owner)) is not None

    async def heartbeat(self, owner: str) -> None:
        await self.cache.set(OWNER_KEY.format(owner=owner), b"1", ttl=OWNER_TTL_S)

    async def owner_gone(self, owner: str) -> None:
        await self.cache.delete(OWNER_KEY.format(owner=owner))


class _CountingQueue(asyncio.Queue):  # type: ignore[type-arg]
    """aiomqtt's incoming queue: when full, aiomqtt drops the message (already
    PUBACKed, so the device's retransmission recovers it); we count it."""

    def put_nowait(self, item: Any) -> None:
        try:
            super().put_nowait(item)
        except asyncio.QueueFull:
            messages_dropped.labels("queue_full").inc()
            raise


class MqttIngest:
    """The MQTT bridge as a runtime component: up topics in, down topics out."""

    name = "mqtt"

    def __init__(self, settings: Settings, listener: Listener):
        self.settings = settings
        self.listener = listener
        # Also the MQTT client id (22 characters: within MQTT 3.1.1's guaranteed 23).
        self.instance_id = f"solewatch-{secrets.token_hex(6)}"
        cache: Cache = listener.cache if listener.cache is not None else MemoryCache()
        self.sessions = Sessions(cache, lambda: self.settings.idle_timeout)
        self.devices: dict[str, MqttDevice] = {}  # imei -> its state in this process
        self._outgoing: deque[tuple[str, bytes]] = deque()
        self._outgoing_ready = asyncio.Event()
        self._in_flight = 0  # publishes sent, not yet confirmed by the broker
        self._backlog = 0  # messages taken from the client, not yet processed
        self._room = asyncio.Event()
        self._room.set()
        self._client: aiomqtt.Client | None = None
        self._subscribed = asyncio.Event()
        self._not_ready: str | None = "not connected to the MQTT broker yet"
        self._connection: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._draining = False
        self._topics = _Topics(settings)

    # -- component ------------------------------------------------------------------------

    async def start(self) -> None:
        _broker_address(self.settings)  # refuses an unusable URL now, not in the reconnect loop
        self.spawn(self._sweep_sessions())
        self.spawn(self._heartbeat())
        self._connect()
        try:
            await asyncio.wait_for(self._subscribed.wait(), FIRST_CONNECT_WAIT_S)
        except TimeoutError:
            # Devices retransmit until we are there: start, not ready, and keep trying.
            log.warning("mqtt_broker_unreachable_at_start", reason=self._not_ready)

    async def drain(self) -> None:
        """Stop taking messages, then finish those taken: stored, acknowledged, published."""
        self._draining = True
        client = self._client
        if client is not None:
            try:
                # The broker now sends the group's share to the other listeners.
                await client.unsubscribe(self._topics.subscription, timeout=2)
            except aiomqtt.MqttError as exc:
                log.warning("mqtt_unsubscribe_failed", error=str(exc))
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        busy = [device.task for device in self.devices.values() if device.task is not None]
        if busy:
            await asyncio.wait(busy, timeout=DRAIN_TIMEOUT_S)
        while any(d.unacked for d in self.devices.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        while (self._outgoing or self._in_flight) and self._client is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        unacked = sum(d.unacked for d in self.devices.values())
        if unacked or self._outgoing or self._in_flight:
            log.error("mqtt_drain_incomplete", frames_not_committed=unacked,
                      replies_not_published=len(self._outgoing) + self._in_flight,
                      consequence="devices retransmit what was not acknowledged")
        for device in self.devices.values():
            # Their sessions outlive us (other listeners adopt them): no offline mark, no offline announcement.
            device.leave_online(announce=False)
        try:
            await self.sessions.owner_gone(self.instance_id)  # others take our devices over at once
        except Exception as exc:
            log.warning("mqtt_owner_release_failed", error=str(exc))

    async def close(self) -> None:
        await self._disconnect()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def reload(self, settings: Settings) -> None:
        # Limits apply at once. Reconnect only when the broker or the topics
        # change: a needless reconnect loses what sits in the client's queue
        # (PUBACKed, so devices retransmit it) for nothing.
        before = _Topics(self.settings), self.settings.mqtt_url
        self.settings = settings
        if (_Topics(settings), settings.mqtt_url) == before:
            return
        log.info("mqtt_reconnecting_for_new_settings")
        await self._disconnect()
        self._topics = _Topics(settings)
        if settings.mqtt_url is not None:
            _broker_address(settings)
            self._connect()

    async def check_ready(self) -> str | None:
        if self.settings.mqtt_url is None:
            return None  # MQTT switched off by a reload: nothing to wait for
        return self._not_ready

    # -- the broker connection ----------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _connect(self) -> None:
        self._connection = self.spawn(self._stay_connected())

    async def _disconnect(self) -> None:
        task, self._connection = self._connection, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _stay_connected(self) -> None:
        delay = RECONNECT_MIN_S
        while True:
            host, port = _broker_address(self.settings)[:2]
            try:
                async with self._new_client() as client:
                    connects.labels("ok").inc()
                    if not self._draining:
                        granted = await client.subscribe(self._topics.subscription, qos=1)
                        if any(_refused(code) for code in granted):
                            raise aiomqtt.MqttError(f"subscription to {self._topics.subscription} refused")
                    delay = RECONNECT_MIN_S
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                reason = f"MQTT broker {host}:{port} unreachable: {exc}"
            except Exception as exc:  # a bug must not end ingestion for good: log it and reconnect
                log.exception("mqtt_connection_failed")
                reason = f"MQTT connection failed: {exc!r}"
            connects.labels("lost").inc()
            self._not_ready = reason
            log.warning("mqtt_disconnected", reason=reason, retry_in_s=round(delay, 2))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _new_client(self) -> aiomqtt.Client:
        # A fresh client per connection: nothing half-sent on the old one is
        # replayed behind our back (our own queue resends what was not confirmed).
        host, port, username, password, tls = _broker_address(self.settings)
        client = aiomqtt.Client(
            host, port, username=username, password=password, identifier=self.instance_id,
            clean_session=True, keepalive=KEEPALIVE_S, tls_context=ssl.create_default_context() if tls else None,
            queue_type=_CountingQueue, max_queued_incoming_messages=INCOMING_QUEUE_LIMIT,
            logger=logging.getLogger("solewatch.listener.mqtt.client"),
        )
        client.pending_calls_threshold = PUBLISH_BATCH + 16  # our batches are the expected load
        return client

    async def _serve(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._not_ready = None
        self._subscribed.set()
        connected.set(1)
        log.info("mqtt_connected", broker=_broker_address(self.settings)[0], client_id=self.instance_id,
                 subscription=self._topics.subscription)
        publisher = asyncio.get_running_loop().create_task(self._publish(client))
        try:
            async for message in client.messages:
                self._dispatch(message)
                if self._backlog >= LOCAL_BACKLOG_LIMIT:
                    self._room.clear()  # the store is slow: stop taking until half is done
                    await self._room.wait()
        finally:
            self._client = None
            self._subscribed.clear()
            connected.set(0)
            publisher.cancel()
            await asyncio.wait([publisher])

    # -- up: messages to devices ----------------------------------------------------------

    def _dispatch(self, message: aiomqtt.Message) -> None:
        messages_received.inc()
        imei = self._topics.imei(message.topic.value)
        payload = message.payload
        if imei is None:
            messages_dropped.labels("topic").inc()
            log.warning("mqtt_topic_ignored", topic=message.topic.value)
            return
        if message.retain:
            # A retained message is a replay of old frames to each new subscriber: not from the device now.
            messages_dropped.labels("retained").inc()
            log.warning("mqtt_retained_message_ignored", imei=imei)
            return
        if not isinstance(payload, bytes) or not payload:
            messages_dropped.labels("empty").inc()
            return
        device = self.devices.get(imei)
        if device is None:
            device = self.devices[imei] = MqttDevice(self, imei)
        device.inbox.append((payload, time.time()))
        self._backlog += 1
        if device.task is None:
            device.task = self.spawn(device.run())

    def consumed(self) -> None:
        self._backlog -= 1
        if self._backlog <= LOCAL_BACKLOG_LIMIT // 2:
            self._room.set()

    # -- down: replies and commands ------------------------------------------------------------

    def publish(self, imei: str, data: bytes) -> None:
        """Queue a message for a device's down topic; sent in order, as soon as the broker is there."""
        if len(self._outgoing) >= OUTGOING_LIMIT:
            # Oldest first: an ACK not delivered costs a retransmission, nothing else.
            self._outgoing.popleft()
            publishes.labels("dropped").inc()
        self._outgoing.append((self._topics.down(imei), data))
        outgoing_queued.set(len(self._outgoing))
        self._outgoing_ready.set()

    async def _publish(self, client: aiomqtt.Client) -> None:
        outgoing = self._outgoing
        while True:
            while not outgoing:
                self._outgoing_ready.clear()
                await self._outgoing_ready.wait()
            batch = [outgoing.popleft() for _ in range(min(PUBLISH_BATCH, len(outgoing)))]
            self._in_flight = len(batch)
            try:
                results = await asyncio.gather(
                    *(client.publish(topic, payload, qos=1) for topic, payload in batch), return_exceptions=True,
                )
            except asyncio.CancelledError:
                # The connection is gone: all of it again on the next one (a device
                # may get an ACK twice, which rule 3 allows; it must not get none).
                outgoing.extendleft(reversed(batch))
                raise
            finally:
                self._in_flight = 0
            failed = [item for item, result in zip(batch, results, strict=True) if isinstance(result, BaseException)]
            publishes.labels("ok").inc(len(batch) - len(failed))
            outgoing_queued.set(len(outgoing))
            if failed:
                publishes.labels("failed").inc(len(failed))
                outgoing.extendleft(reversed(failed))
                error = next(r for r in results if isinstance(r, BaseException))
                log.warning("mqtt_publish_failed", messages=len(failed), error=repr(error))
                await asyncio.sleep(RECONNECT_MIN_S)  # a lost connection is noticed by _serve meanwhile

    # -- sessions that end without a message ----------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self.sessions.heartbeat(self.instance_id)
            except Exception as exc:
                log.warning("mqtt_owner_heartbeat_failed", error=str(exc))
            await asyncio.sleep(OWNER_TTL_S / 3)

    async def _sweep_sessions(self) -> None:
        """Drop devices whose session expired (idle), ended or moved to another owner."""
        while True:
            idle = self.settings.idle_timeout
            await asyncio.sleep(min(max(idle / 20, 0.05), 5.0))
            now = time.monotonic()
            for device in list(self.devices.values()):
                if device.task is not None:
                    continue  # busy with messages: it checks the session itself
                if self.listener.online.get(device.imei) is device:
                    if now - device.verified_at < idle / 10:
                        continue
                    checked = device.verified_at
                    try:
                        info = await self.sessions.get(device.imei)
                    except Exception:
                        continue  # cannot tell: keep it until we can
                    if device.task is not None or device.verified_at != checked:
                        continue  # a message came in meanwhile and knows better
                    if info is None:
                        sessions_ended.labels("idle").inc()
                        log.info("mqtt_session_expired", imei=device.imei, idle_timeout=idle)
                        device.leave_online(announce=True)
                    elif info.owner != self.instance_id:
                        device.leave_online(announce=False)  # online elsewhere: no offline announcement
                    else:
                        device.verified_at = now
                elif not device.inbox and not device.unacked and now - device.last_activity > idle:
                    del self.devices[device.imei]


class MqttDevice:
    """One device's MQTT session in this process.

    It stands in `Listener.online` (when this process owns the device) as a
    TCP DeviceConnection does, with what the listener uses of one: `session`
    (its `imei`, and `command()` to build COMMAND frames), `device`, `send`,
    `close` and `last_seen_wall`. It is also the committer's AckSink for the
    device's frames.
    """

    def __init__(self, ingest: MqttIngest, imei: str):
        self.ingest = ingest
        self.imei = imei
        # For the listener only (imei, command frames). Each message is parsed by its own session.
        self.session = DeviceSession()
        self.session.imei = imei
        self.device: Device | None = None
        self.peer = f"mqtt:{ingest._topics.up(imei)}"
        self.inbox: deque[tuple[bytes, float]] = deque()
        self.task: asyncio.Task[None] | None = None
        self.unacked = 0
        self.bad_frames_in_a_row = 0  # carried across messages, as across reads on TCP
        self.last_activity = self.opened_at = self.verified_at = self._refreshed_at = time.monotonic()
        self.last_seen_wall = time.time()
        self._out = bytearray()  # replies of the message being processed, published together
        self._wake = asyncio.Event()

    async def run(self) -> None:
        # One device's messages in order (a LOGIN before what follows it); other devices meanwhile.
        try:
            while self.inbox:
                payload, received_at = self.inbox.popleft()
                try:
                    await self._handle(payload, received_at)
                except Exception:
                    log.exception("mqtt_message_failed", imei=self.imei)
                finally:
                    self.ingest.consumed()
        finally:
            self.task = None

    async def _handle(self, payload: bytes, received_at: float) -> None:
        self.last_activity = time.monotonic()
        self.last_seen_wall = received_at
        info: SessionInfo | None = None
        if not _starts_with_login(payload):
            try:
                info = await self.ingest.sessions.get(self.imei)
            except Exception as exc:
                # Without the cache we cannot tell who is logged in: the frames get no ACK and come again.
                messages_dropped.labels("session_unavailable").inc()
                log.warning("mqtt_session_lookup_failed", imei=self.imei, error=str(exc))
                return
        session = DeviceSession()
        if info is not None:
            # Restore the login this message continues (a DeviceSession is per byte stream).
            session.state = SessionState.ONLINE
            session.imei = self.imei
            self.verified_at = time.monotonic()
            info = await self._keep_alive(info)
        session.bad_frames_in_a_row = self.bad_frames_in_a_row
        session.receive_data(payload)
        try:
            await self._frames(session, info, received_at)
        finally:
            self.bad_frames_in_a_row = 0 if session.state is SessionState.CLOSED else session.bad_frames_in_a_row
            if session.bad_frames:
                metrics.bad_frames.inc(session.bad_frames)
            self._flush_out()

    async def _frames(self, session: DeviceSession, info: SessionInfo | None, received_at: float) -> None:
        listener = self.ingest.listener
        committer = listener.committer
        received = metrics.FRAMES_RECEIVED
        while True:
            if self.unacked >= listener.settings.max_unacked_per_connection or committer.overloaded:
                await self._wait_for_room()
            event = session.next_event()
            if event is None:
                return  # the message is done; a truncated last frame is dropped with it, unacknowledged
            if type(event) is Reply:
                self._reply(event)
                if event.close:
                    await self._end(event.reason, had_session=info is not None)
                    return
                log.info("frame_refused", imei=self.imei, reason=event.reason)
                continue
            if type(event) is Login:
                info = await self._login(session, event)
                if info is None:
                    return
                continue
            assert info is not None  # the session hands out telemetry only once online
            kind = _KIND[type(event)]
            received[kind] = received.get(kind, 0) + 1
            reason = validate(event, received_at)  # type: ignore[arg-type]
            if reason is not None:
                metrics.frames_rejected.inc()
                self._reply(Reply(encode_ack(event.seq, AckStatus.REJECTED), False, reason))  # type: ignore[union-attr]
                log.info("frame_rejected", imei=self.imei, seq=event.seq, reason=reason)  # type: ignore[union-attr]
                continue
            self.unacked += 1
            listener.committer.submit(
                FrameRecord(info.device_id, info.tenant_id, self.imei, event, received_at), self,  # type: ignore[arg-type]
            )

    async def _wait_for_room(self) -> None:
        # Backpressure as on TCP: the device's window of frames awaiting
        # durability, and the committer's queue as a whole. Other devices go on.
        self._flush_out()
        committer = self.ingest.listener.committer
        while (self.unacked >= self.ingest.listener.settings.max_unacked_per_connection
               or committer.overloaded):
            if committer.overloaded:
                committer.stall(self)
            self._wake.clear()
            await self._wake.wait()

    async def _login(self, session: DeviceSession, login: Login) -> SessionInfo | None:
        """Check a LOGIN; the session info when accepted, None when the message must stop here."""
        ingest = self.ingest
        server_time = int(time.time())
        device: Device | None = None
        if login.imei != self.imei:
            log.warning("login_refused_topic_mismatch", topic_imei=self.imei, login_imei=login.imei)
            status = LoginStatus.UNKNOWN_DEVICE  # no such device *on this topic*
        else:
            try:
                device = await ingest.listener.store.device_by_imei(login.imei)
            except Exception as exc:
                # We cannot tell a good token from a bad one: no LOGIN_ACK, the device retries.
                log.error("login_lookup_failed", imei=login.imei, error=str(exc), transport="mqtt")
                metrics.logins.labels("store_unavailable").inc()
                return None
            status = login_verdict(device, login.token)
        metrics.logins.labels(status.name.lower()).inc()
        if status is not LoginStatus.ACCEPTED or device is None:
            log.warning("login_refused", imei=login.imei, status=status.name, peer=self.peer)
            reply = session.reject_login(status, server_time, login.seq)
            self._reply(reply)
            # As a refused LOGIN closes its TCP connection, it ends the topic's session.
            await self._end(reply.reason, had_session=True)
            return None
        info = SessionInfo(device.id, device.tenant_id, ingest.instance_id)
        try:
            # Recorded before the LOGIN_ACK goes out, so the device's next message
            # finds it whichever listener process receives it.
            await ingest.sessions.put(self.imei, info)
        except Exception as exc:
            log.error("mqtt_session_store_failed", imei=self.imei, error=str(exc))
            return None  # no LOGIN_ACK: the device logs in again
        self.device = device
        self.verified_at = self._refreshed_at = time.monotonic()
        self._out += session.accept_login(login.imei, server_time, login.seq)
        self._flush_out()
        log.info("device_online", imei=login.imei, firmware=f"0x{login.firmware:04x}", peer=self.peer)
        ingest.listener.logged_in(cast("DeviceConnection", self))  # commands and online status, as for TCP
        return info

    async def _keep_alive(self, info: SessionInfo) -> SessionInfo:
        """Refresh the session's TTL now and then, and adopt it if its owner is gone."""
        ingest = self.ingest
        now = time.monotonic()
        if now - self._refreshed_at < ingest.settings.idle_timeout / 10:
            return info  # a session expires 90-100% of the idle timeout after the last message
        self._refreshed_at = now
        online = ingest.listener.online
        try:
            if info.owner != ingest.instance_id and not await ingest.sessions.owner_alive(info.owner):
                # The process that accepted the login is gone; without an owner the
                # device would get no commands until it logs in again.
                info = info._replace(owner=ingest.instance_id)
            await ingest.sessions.put(self.imei, info)
            # Ours, and nobody holds it here (a TCP connection that does keeps it: newest login wins).
            if info.owner == ingest.instance_id and online.get(self.imei) is None:
                device = await ingest.listener.store.device(info.device_id)
                if device is not None and online.get(self.imei) is None:
                    self.device = device
                    log.info("mqtt_session_adopted", imei=self.imei, owner=ingest.instance_id)
                    ingest.listener.logged_in(cast("DeviceConnection", self))
        except Exception as exc:
            log.warning("mqtt_session_refresh_failed", imei=self.imei, error=str(exc))
        return info

    async def _end(self, reason: str, *, had_session: bool) -> None:
        """What closing the connection is on TCP: the device must log in again."""
        sessions_ended.labels(_reason_label(reason)).inc()
        log.info("mqtt_session_ended", imei=self.imei, reason=reason)
        self.bad_frames_in_a_row = 0
        if had_session:
            # Without one there is nothing to end, and deleting could remove a login
            # another process has just accepted (consecutive messages may be split).
            try:
                await self.ingest.sessions.end(self.imei)
            except Exception as exc:
                log.warning("mqtt_session_end_failed", imei=self.imei, error=str(exc))
        self.leave_online(announce=True)

    def leave_online(self, *, announce: bool) -> None:
        listener = self.ingest.listener
        if listener.online.get(self.imei) is self:
            if announce:
                listener.forget(cast("DeviceConnection", self))  # offline mark and device_status
            else:
                del listener.online[self.imei]

    # -- replies ----------------------------------------------------------------------------

    def _reply(self, reply: Reply) -> None:
        if reply.data:
            self._out += reply.data
            if reply.data[3:4] == b"\x80":  # an ACK: count it by its status byte
                metrics.ACKS_BY_STATUS[AckStatus(reply.data[8])].inc()
            if len(self._out) >= 4096:
                self._flush_out()

    def _flush_out(self) -> None:
        if self._out:
            self.ingest.publish(self.imei, bytes(self._out))
            self._out.clear()

    # -- AckSink (called by the committer) and what the listener calls -----------------------

    def queue_ack(self, seq: int, status: AckStatus) -> None:
        self.unacked -= 1
        self._out += encode_ack(seq, status)

    def flush_acks(self) -> None:
        # The ACKs of one commit, and any reply queued before them, in one message.
        self._flush_out()
        self._wake.set()

    def resume_if_possible(self) -> None:
        self._wake.set()

    def send(self, data: bytes) -> None:
        """A COMMAND frame from the listener."""
        self.ingest.publish(self.imei, data)

    def close(self, reason: str) -> None:
        """The listener's way to drop a connection: here, when the device logged in over TCP."""
        self.ingest.spawn(self._end(reason, had_session=True))


# -- helpers ---------------------------------------------------------------------------------


class _Topics:
    """The topic scheme for one set of settings (compared on reload)."""

    def __init__(self, settings: Settings):
        self.prefix = settings.mqtt_topic_prefix.rstrip("/")
        self.group = settings.mqtt_shared_group
        up = f"{self.prefix}/+/up"
        self.subscription = f"$share/{self.group}/{up}" if self.group else up
        self._head, self._tail = f"{self.prefix}/", "/up"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Topics) and (self.prefix, self.group) == (other.prefix, other.group)

    def __hash__(self) -> int:
        return hash((self.prefix, self.group))

    def up(self, imei: str) -> str:
        return f"{self.prefix}/{imei}/up"

    def down(self, imei: str) -> str:
        return f"{self.prefix}/{imei}/down"

    def imei(self, topic: str) -> str | None:
        if not (topic.startswith(self._head) and topic.endswith(self._tail)):
            return None
        imei = topic[len(self._head) : -len(self._tail)]
        return imei if len(imei) == 15 and imei.isascii() and imei.isdigit() else None


def _broker_address(settings: Settings) -> tuple[str, int, str | None, str | None, bool]:
    """host, port, username, password, TLS from `mqtt[s]://[user:password@]host[:port]`."""
    if not settings.mqtt_url:
        raise ValueError("the MQTT ingest needs SOLEWATCH_MQTT_URL")
    url = urlsplit(settings.mqtt_url)
    if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not url.hostname:
        raise ValueError("SOLEWATCH_MQTT_URL must look like mqtt://host:1883 or mqtts://user:password@host:8883")
    tls = url.scheme in ("mqtts", "ssl")
    return (url.hostname, url.port or (8883 if tls else 1883),
            unquote(url.username) if url.username else None, unquote(url.password) if url.password else None, tls)


def _refused(code: Any) -> bool:
    # paho gives ReasonCodes (MQTT 5 style, also for 3.1.1) or ints; 0x80 and up is a failure.
    return bool(getattr(code, "is_failure", False)) or (isinstance(code, int) and code >= 0x80)


def _starts_with_login(payload: bytes) -> bool:
    """True when the message's first intact frame is a LOGIN (it opens a new session)."""
    frames = FrameBuffer()
    frames.feed(payload)
    try:
        frame = frames.next_frame()
        while type(frame) is BadCrc:
            frame = frames.next_frame()
    except XSoleProtocolError:
        return False
    return type(frame) is RawFrame and frame.type == FrameType.LOGIN


def _reason_label(reason: str) -> str:
    reason = reason.lower()
    for label in ("login refused", "before login", "bad frames", "length", "malformed login", "replaced"):
        if label in reason:
            return label.replace(" ", "_")
    return "other"

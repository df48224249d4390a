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
  DeviceSession resumed to the session's login (`DeviceSession.resume`): a
  message is whole frames, so a truncated tail must not swallow the start of
  the next message (it is dropped, unacknowledged, and the device retransmits
  it). A LOGIN starts a new session wherever it comes, even while one is open
  (`DeviceSession(relogin=True)`): over MQTT a rebooted device cannot open a
  new connection, and a LOGIN must get its LOGIN_ACK (contract §1).
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
the listener's registry, so it alone sends it downlink commands (otherwise every
process's command poll would send each command once). An owner that stops
heart-beating its `mqtt:ingest:{id}` key has its devices adopted by another
process within seconds (mqtt_handover.py).

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
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import aiomqtt
from prometheus_client import Counter, Gauge

from services.listener import metrics
from services.listener.link import CloseReason
from services.listener.mqtt_broker import Topics, broker_address, refused
from services.listener.mqtt_device import MqttDevice, messages_dropped, sessions_ended
from services.listener.mqtt_handover import Handover
from services.listener.mqtt_sessions import Sessions
from shared.cache import Cache
from shared.cache.memory import MemoryCache
from shared.config import Settings
from shared.logging import get_logger
from shared.protocols.xsole import AckStatus, BadCrc, FrameBuffer, FrameType, XSoleProtocolError
from shared.protocols.xsole.messages import encode_acks

if TYPE_CHECKING:
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
# Bounds on what is held in memory. Past the first two a message's frames get ACK 4 at
# once (busy: the device retransmits them later) rather than memory growing without limit.
INCOMING_QUEUE_LIMIT = 10_000  # in aiomqtt's queue, not yet taken by us
LOCAL_BACKLOG_LIMIT = 10_000  # taken, waiting for their device's turn; above it frames get ACK 4
OUTGOING_LIMIT = 100_000  # replies waiting for the broker (while it is unreachable); past it the oldest go
DRAIN_TIMEOUT_S = 10.0


connected = Gauge("listener_mqtt_connected", "1 while connected and subscribed to the MQTT broker")
connects = Counter("listener_mqtt_connects_total", "Connection attempts to the MQTT broker", ["result"])
messages_received = Counter("listener_mqtt_messages_received_total", "MQTT messages received on the up topics")
publishes = Counter("listener_mqtt_publishes_total", "Messages published on the down topics", ["result"])
outgoing_queued = Gauge("listener_mqtt_outgoing_queued", "Messages waiting to be published on the down topics")


messages_busy = Counter(
    "listener_mqtt_messages_busy_total",
    "MQTT messages answered ACK 4 (busy) without being processed: too many were waiting",
)


class MqttIngest:
    """The MQTT bridge as a runtime component: up topics in, down topics out."""

    name = "mqtt"

    def __init__(self, settings: Settings, listener: Listener):
        self.settings = settings
        # What every transport shares: the ingest step and the registry of who is online where.
        self.step = listener.ingest
        self.registry = listener.registry
        self.login_backoff = listener.login_backoff
        self.devices_store = listener.store
        # Also the MQTT client id (22 characters: within MQTT 3.1.1's guaranteed 23).
        self.instance_id = f"solewatch-{secrets.token_hex(6)}"
        cache: Cache = listener.cache if listener.cache is not None else MemoryCache()
        self.sessions = Sessions(cache, lambda: self.settings.idle_timeout)
        # A revoked device's session ends in the shared cache even when no process holds its link.
        self.registry.on_revoked.append(self.sessions.end)
        self.devices: dict[str, MqttDevice] = {}  # imei -> its state in this process
        self.handover = Handover(
            instance_id=self.instance_id,
            sessions=self.sessions,
            held_here=self._held_here,
            link_for=self._link_for,
            lost=self._recheck_all,
        )
        # (topic, payload, may be sent again): replies never are (one ACK per frame), COMMANDs may.
        self._outgoing: deque[tuple[str, bytes, bool]] = deque()
        self._outgoing_ready = asyncio.Event()
        self._in_flight = 0  # publishes sent, not yet confirmed by the broker
        self._backlog = 0  # messages taken from the client, not yet processed
        self._client: aiomqtt.Client | None = None
        self._subscribed = asyncio.Event()
        self._not_ready: str | None = "not connected to the MQTT broker yet"
        self._connection: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._draining = False
        self._topics = Topics(settings)

    # -- component ------------------------------------------------------------------------

    async def start(self) -> None:
        broker_address(self.settings)  # refuses an unusable URL now, not in the reconnect loop
        self.spawn(self._sweep_sessions())
        self.spawn(self.handover.heartbeat())
        self.spawn(self.handover.sweep())
        self.spawn(self.handover.keep_owned_list())
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
            log.error(
                "mqtt_drain_incomplete",
                frames_not_committed=unacked,
                replies_not_published=len(self._outgoing) + self._in_flight,
                consequence="devices retransmit what was not acknowledged",
            )
        self.handover.stopped = True
        for device in self.devices.values():
            # Their sessions outlive us (other listeners adopt them): no offline mark, no offline announcement.
            self.registry.left(device, announce=False)
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
        before = Topics(self.settings), self.settings.mqtt_url
        self.settings = settings
        if (Topics(settings), settings.mqtt_url) == before:
            return
        log.info("mqtt_reconnecting_for_new_settings")
        await self._disconnect()
        self._topics = Topics(settings)
        if settings.mqtt_url is not None:
            broker_address(settings)
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
            host, port = broker_address(self.settings)[:2]
            try:
                async with self._new_client() as client:
                    connects.labels("ok").inc()
                    if not self._draining:
                        granted = await client.subscribe(self._topics.subscription, qos=1)
                        if any(refused(code) for code in granted):
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
        # replayed behind our back (our own queue sends again only the COMMANDs not confirmed).
        host, port, username, password, tls = broker_address(self.settings)
        client = aiomqtt.Client(
            host,
            port,
            username=username,
            password=password,
            identifier=self.instance_id,
            clean_session=True,
            keepalive=KEEPALIVE_S,
            tls_context=ssl.create_default_context() if tls else None,
            queue_type=self._incoming_queue_type(),
            max_queued_incoming_messages=INCOMING_QUEUE_LIMIT,
            logger=logging.getLogger("solewatch.listener.mqtt.client"),
        )
        client.pending_calls_threshold = PUBLISH_BATCH + 16  # our batches are the expected load
        return client

    async def _serve(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._not_ready = None
        self._subscribed.set()
        connected.set(1)
        log.info(
            "mqtt_connected",
            broker=broker_address(self.settings)[0],
            client_id=self.instance_id,
            subscription=self._topics.subscription,
        )
        publisher = asyncio.get_running_loop().create_task(self._publish(client))
        try:
            async for message in client.messages:
                self._dispatch(message)
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
        if self._backlog >= LOCAL_BACKLOG_LIMIT:
            self._answer_busy(imei, payload)  # the store is slow: retry later, as TCP's ACK 4 says
            return
        device = self._link_for(imei)
        device.inbox.append((payload, time.time()))
        self._backlog += 1
        if device.task is None:
            device.task = self.spawn(device.run())

    def consumed(self) -> None:
        self._backlog -= 1

    def _answer_busy(self, imei: str, payload: bytes) -> None:
        """ACK 4 for each intact frame of a message not processed, so that none goes unanswered
        (contract §1 rule 2). A LOGIN gets no LOGIN_ACK (it has no busy status): the device
        logs in again later, as when the store cannot be asked."""
        messages_busy.inc()
        frames = FrameBuffer()
        frames.feed(payload)
        seqs: list[int] = []
        try:
            while (frame := frames.next_frame()) is not None:
                if type(frame) is not BadCrc and frame.type != FrameType.LOGIN:
                    seqs.append(frame.seq)
        except XSoleProtocolError:
            pass  # what follows a broken length is not frames
        if seqs:
            metrics.ACKS_BY_STATUS[AckStatus.BUSY].inc(len(seqs))
            self.publish(imei, encode_acks(seqs, AckStatus.BUSY))

    def _incoming_queue_type(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """aiomqtt's incoming queue: when full, aiomqtt would drop a message (already PUBACKed)
        unanswered; its frames get ACK 4 instead."""
        ingest = self

        class IncomingQueue(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                try:
                    super().put_nowait(item)
                except asyncio.QueueFull:
                    imei = ingest._topics.imei(item.topic.value)
                    if imei is not None and isinstance(item.payload, bytes) and not item.retain:
                        ingest._answer_busy(imei, item.payload)

        return IncomingQueue

    def _link_for(self, imei: str) -> MqttDevice:
        device = self.devices.get(imei)
        if device is None:
            device = self.devices[imei] = MqttDevice(self, imei)
        return device

    def up_topic(self, imei: str) -> str:
        return self._topics.up(imei)

    # -- ownership -----------------------------------------------------------------------------

    def owned_changed(self) -> None:
        self.handover.owned_changed()

    def _held_here(self) -> set[str]:
        return {imei for imei, link in self.registry.online.items() if self.devices.get(imei) is link}

    def _recheck_all(self) -> None:
        # Our mark lapsed (a stalled loop): another process may have adopted our devices.
        for device in self.devices.values():
            device.verified_at = float("-inf")

    # -- down: replies and commands ------------------------------------------------------------

    def publish(self, imei: str, data: bytes, *, resend: bool = False) -> None:
        """Queue a message for a device's down topic; sent in order, as soon as the broker is there.

        `resend`: may go again if its publish fails (a COMMAND: the device answers its seq once).
        Replies never do: a publish cut by a lost connection may have reached the broker, and an
        ACK must not reach the device twice; an ACK lost costs a retransmission, acknowledged then.
        """
        if len(self._outgoing) >= OUTGOING_LIMIT:
            # Oldest first: an ACK not delivered costs a retransmission, nothing else.
            self._outgoing.popleft()
            publishes.labels("dropped").inc()
        self._outgoing.append((self._topics.down(imei), data, resend))
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
                    *(client.publish(topic, payload, qos=1) for topic, payload, _ in batch),
                    return_exceptions=True,
                )
            except asyncio.CancelledError:
                # The connection is gone: each publish may or may not have reached the broker.
                # COMMANDs go again on the next connection; replies do not (see `publish`).
                self._give_up(batch)
                raise
            finally:
                self._in_flight = 0
            failed = [item for item, result in zip(batch, results, strict=True) if isinstance(result, BaseException)]
            publishes.labels("ok").inc(len(batch) - len(failed))
            outgoing_queued.set(len(outgoing))
            if failed:
                publishes.labels("failed").inc(len(failed))
                self._give_up(failed)
                error = next(r for r in results if isinstance(r, BaseException))
                log.warning("mqtt_publish_failed", messages=len(failed), error=repr(error))
                await asyncio.sleep(RECONNECT_MIN_S)  # a lost connection is noticed by _serve meanwhile

    def _give_up(self, items: list[tuple[str, bytes, bool]]) -> None:
        again = [item for item in items if item[2]]
        self._outgoing.extendleft(reversed(again))
        if len(again) < len(items):
            publishes.labels("abandoned").inc(len(items) - len(again))

    # -- sessions that end without a message ----------------------------------------------------

    async def _sweep_sessions(self) -> None:
        """Drop devices whose session expired (idle), ended or moved to another owner."""
        while True:
            idle = self.settings.idle_timeout
            await asyncio.sleep(min(max(idle / 20, 0.05), 5.0))
            now = time.monotonic()
            for device in list(self.devices.values()):
                if device.task is not None:
                    continue  # busy with messages: it checks the session itself
                if self.registry.online.get(device.imei) is device:
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
                        sessions_ended.labels(CloseReason.IDLE.value).inc()
                        log.info("mqtt_session_expired", imei=device.imei, idle_timeout=idle)
                        self.registry.left(device)
                    elif info.owner != self.instance_id:
                        self.registry.left(device, announce=False)  # online elsewhere: no offline announcement
                    else:
                        device.verified_at = now
                elif not device.inbox and not device.unacked and now - device.last_activity > idle:
                    del self.devices[device.imei]

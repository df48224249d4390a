"""One device over MQTT: the MQTT transport's `DeviceLink`.

`MqttIngest` (mqtt.py) owns the broker connection and hands each message to
the device's `MqttDevice`; the login session itself lives in the cache
(mqtt_sessions.py), so that listeners sharing one subscription agree on it.
Each message is parsed by a session of its own, resumed from the cache's
login, and goes through the listener's shared ingest step (ingest.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol

from prometheus_client import Counter

from services.listener import metrics
from services.listener.ingest import Ingest, Stop
from services.listener.link import CloseReason
from services.listener.login_backoff import LoginBackoff
from services.listener.mqtt_sessions import SessionInfo, Sessions
from services.listener.registry import Registry
from shared.config import Settings
from shared.logging import get_logger
from shared.protocols.xsole import (
    AckStatus,
    BadCrc,
    DeviceSession,
    FrameBuffer,
    FrameType,
    Login,
    RawFrame,
    SessionState,
    XSoleProtocolError,
)
from shared.protocols.xsole.messages import encode_acks
from shared.store.batch import DeviceRef
from shared.store.port import Device

log = get_logger("solewatch.listener.mqtt")

messages_dropped = Counter(
    "listener_mqtt_messages_dropped_total", "MQTT messages not processed (their frames get no ACK)", ["reason"]
)
sessions_ended = Counter(
    "listener_mqtt_sessions_ended_total", "Device sessions over MQTT ended by the listener", ["reason"]
)


class DeviceLookup(Protocol):
    async def device(self, device_id: int) -> Device | None: ...


class MqttTransport(Protocol):
    """What a device's link needs of the MQTT bridge that carries it (MqttIngest)."""

    instance_id: str
    sessions: Sessions
    settings: Settings
    step: Ingest
    registry: Registry
    login_backoff: LoginBackoff

    @property
    def devices_store(self) -> DeviceLookup: ...

    def up_topic(self, imei: str) -> str: ...
    def publish(self, imei: str, data: bytes, *, resend: bool = False) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
    def consumed(self) -> None: ...
    def owned_changed(self) -> None: ...


class MqttDevice:
    """One device's MQTT link in this process.

    While this process owns the device it stands in the registry, as a TCP
    connection does; it is also the committer's AckSink for the frames of the
    device that this process receives, owner or not.
    """

    login_imei: str
    address = None  # the topic is the device's own (broker ACLs): login back-off counts its IMEI only

    def __init__(self, ingest: MqttTransport, imei: str):
        self.ingest = ingest
        self.imei = self.login_imei = imei
        self.session = DeviceSession(relogin=True)  # the message's being handled; between messages, a blank
        self.device: Device | None = None  # set by a login here, or an adoption
        self.device_ref = DeviceRef(0, 0, imei)
        self.peer = f"mqtt:{ingest.up_topic(imei)}"
        self.inbox: deque[tuple[bytes, float]] = deque()
        self.task: asyncio.Task[None] | None = None
        self.unacked = 0
        self.bad_frames_in_a_row = 0  # carried across messages, as across reads on TCP
        self.last_activity = self.opened_at = self.verified_at = self._refreshed_at = time.monotonic()
        self.last_seen_wall = time.time()
        self._out = bytearray()  # replies of the message being handled, published together
        self._wake = asyncio.Event()
        self._handling = False  # a message is being handled
        self._had_session = False  # the message being handled continues (or opened) a session
        self._end: tuple[CloseReason, str | None] | None = None  # why the message's session ended

    @property
    def closing(self) -> bool:
        return self._end is not None

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
        session = self.session = DeviceSession(relogin=True)  # a DeviceSession is per byte stream
        if info is not None:
            session.resume(self.imei)  # the login this message continues
            self.device_ref = DeviceRef(info.device_id, info.tenant_id, self.imei)
            self.verified_at = time.monotonic()
            await self._keep_alive(info)
        self._had_session = info is not None
        self._end = None
        self._handling = True
        session.bad_frames_in_a_row = self.bad_frames_in_a_row
        session.receive_data(payload)
        try:
            await self._pump(received_at)
        finally:
            self._handling = False
            self.bad_frames_in_a_row = 0 if session.state is SessionState.CLOSED else session.bad_frames_in_a_row
            if session.bad_frames:
                metrics.bad_frames.labels(session.protocol).inc(session.bad_frames)
            self._flush_out()
        if self._end is not None:
            await self._end_session(*self._end, had_session=self._had_session)

    async def _pump(self, received_at: float) -> None:
        step = self.ingest.step
        while True:
            result = step.pump(self, received_at)
            if result is Stop.FULL:
                await self._wait_for_room()
            elif type(result) is Login:
                if await self.ingest.login_backoff.held(self.imei):
                    # Repeated wrong tokens on this topic: what TCP does by holding the connection,
                    # unread, before closing it. No LOGIN_ACK; the device tries again later.
                    messages_dropped.labels("login_backoff").inc()
                    log.info("login_held", imei=self.imei, peer=self.peer)
                    return
                if not await step.login(self, result):
                    return
            else:
                return  # the message is done; a truncated last frame is dropped with it, unacknowledged

    async def _wait_for_room(self) -> None:
        # Backpressure as on TCP: the ingest step stopped for the device's window or the
        # committer's queue; the ACKs of a commit (or the committer's resume) wake us. Other devices go on.
        self._flush_out()
        await self._wake.wait()

    async def _keep_alive(self, info: SessionInfo) -> None:
        """Refresh the session's TTL now and then, and adopt it if its owner is gone."""
        ingest = self.ingest
        now = time.monotonic()
        if now - self._refreshed_at < ingest.settings.idle_timeout / 10:
            return  # a session expires 90-100% of the idle timeout after the last message
        self._refreshed_at = now
        try:
            if info.owner != ingest.instance_id and not await ingest.sessions.owner_alive(info.owner):
                # The process that accepted the login is gone; without an owner the
                # device would get no commands until it logs in again.
                info = info._replace(owner=ingest.instance_id)
            await ingest.sessions.put(self.imei, info)
            if info.owner == ingest.instance_id:
                await self.adopt(info)
        except Exception as exc:
            log.warning("mqtt_session_refresh_failed", imei=self.imei, error=str(exc))

    async def adopt(self, info: SessionInfo) -> None:
        """Hold the device here (its session is ours), unless a link already does
        (a TCP connection that does keeps it: the newest login wins)."""
        registry = self.ingest.registry
        if registry.online.get(self.imei) is not None:
            return
        device = await self.ingest.devices_store.device(info.device_id)
        if device is not None and registry.online.get(self.imei) is None:
            self.device = device
            self.device_ref = DeviceRef(device.id, device.tenant_id, self.imei)
            self.verified_at = time.monotonic()
            log.info("mqtt_session_adopted", imei=self.imei, owner=self.ingest.instance_id)
            registry.logged_in(self)
            self.ingest.owned_changed()

    async def _end_session(self, reason: CloseReason, detail: str | None, *, had_session: bool) -> None:
        """What closing the connection is on TCP: the device must log in again."""
        sessions_ended.labels(reason.value).inc()
        log.info("mqtt_session_ended", imei=self.imei, reason=reason.value, detail=detail)
        self.bad_frames_in_a_row = 0
        if had_session:
            # Without one there is nothing to end, and deleting could remove a login
            # another process has just accepted (consecutive messages may be split).
            try:
                await self.ingest.sessions.end(self.imei)
            except Exception as exc:
                log.warning("mqtt_session_end_failed", imei=self.imei, error=str(exc))
        self.ingest.registry.left(self)
        self.ingest.owned_changed()

    # -- what the ingest step asks of the link -----------------------------------------------

    async def login_accepted(self, device: Device) -> bool:
        try:
            # Recorded before the LOGIN_ACK goes out, so the device's next message
            # finds it whichever listener process receives it.
            await self.ingest.sessions.put(self.imei, SessionInfo(device.id, device.tenant_id, self.ingest.instance_id))
        except Exception as exc:
            log.error("mqtt_session_store_failed", imei=self.imei, error=str(exc))
            return False  # no LOGIN_ACK: the device logs in again
        self._had_session = True
        self.verified_at = self._refreshed_at = time.monotonic()
        self.ingest.owned_changed()
        return True

    async def login_refused(self, reason: CloseReason, hold_s: float) -> None:
        # There is no connection to hold: the topic's next LOGINs are dropped for that long.
        await self.ingest.login_backoff.hold(self.imei, hold_s)
        self._had_session = True  # as a refused LOGIN closes its TCP connection, it ends the topic's session
        self.close(reason)

    def send(self, data: bytes) -> None:
        if self._handling:
            self._out += data  # with the message's other replies
            if len(self._out) >= 4096:
                self._flush_out()
        else:
            self.ingest.publish(self.imei, data, resend=True)  # a COMMAND: the same seq if sent again

    def pause(self) -> None:
        self._wake.clear()

    def resume(self) -> None:
        self._wake.set()

    def close(self, reason: CloseReason, detail: str | None = None) -> None:
        if self._handling:
            self._end = (reason, detail)  # the message stops here; its session ends once it is done
        else:
            # The registry's way to drop a link: here, when the device logged in on another one.
            self.ingest.spawn(self._end_session(reason, detail, had_session=True))

    # -- AckSink (called by the committer) ------------------------------------------------------

    def queue_acks(self, seqs: list[int], status: AckStatus) -> None:
        self.unacked -= len(seqs)
        self._out += encode_acks(seqs, status)

    def flush_acks(self) -> None:
        # The ACKs of one commit, and any reply queued before them, in one message.
        self._flush_out()
        self._wake.set()

    def resume_if_possible(self) -> None:
        self._wake.set()

    def _flush_out(self) -> None:
        if self._out:
            self.ingest.publish(self.imei, bytes(self._out))
            self._out.clear()


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

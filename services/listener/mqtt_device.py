"""One device's MQTT session: its frames through the sans-IO session, its ACKs and commands.

`MqttIngest` (mqtt.py) owns the broker connection and hands each message to
the device's `MqttDevice`; the login session itself lives in the cache
(`Sessions`), so that listeners sharing one subscription agree on it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, cast

import orjson
from prometheus_client import Counter

from services.listener import metrics
from services.listener.connection import login_verdict
from services.listener.login_backoff import worth_logging
from shared.cache import Cache
from shared.logging import get_logger
from shared.protocols.xsole import (
    AckStatus,
    BadCrc,
    DeviceSession,
    FrameBuffer,
    FrameType,
    Login,
    LoginStatus,
    RawFrame,
    Reply,
    SessionState,
    XSoleProtocolError,
    validate,
)
from shared.protocols.xsole.messages import encode_ack, encode_acks
from shared.store.batch import DeviceRef
from shared.store.port import Device

if TYPE_CHECKING:
    from services.listener.connection import DeviceConnection
    from services.listener.mqtt import MqttIngest

log = get_logger("solewatch.listener.mqtt")

OWNER_TTL_S = 30.0  # an owner that stops renewing its mark loses its devices to another listener
SESSION_KEY = "mqtt:session:{imei}"
OWNER_KEY = "mqtt:ingest:{owner}"

messages_dropped = Counter(
    "listener_mqtt_messages_dropped_total", "MQTT messages not processed (their frames get no ACK)", ["reason"]
)
sessions_ended = Counter(
    "listener_mqtt_sessions_ended_total", "Device sessions over MQTT ended by the listener", ["reason"]
)


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
            reason = validate(event, received_at)  # type: ignore[arg-type]
            if reason is not None:
                metrics.frames_rejected.inc()
                self._reply(Reply(encode_ack(event.seq, AckStatus.REJECTED), False, reason))  # type: ignore[union-attr]
                log.info("frame_rejected", imei=self.imei, seq=event.seq, reason=reason)  # type: ignore[union-attr]
                continue
            self.unacked += 1
            listener.committer.add_event(
                self,
                DeviceRef(info.device_id, info.tenant_id, self.imei),
                event,  # type: ignore[arg-type]  # telemetry: a LOGIN was handled above
                received_at,
            )

    async def _wait_for_room(self) -> None:
        # Backpressure as on TCP: the device's window of frames awaiting
        # durability, and the committer's queue as a whole. Other devices go on.
        self._flush_out()
        committer = self.ingest.listener.committer
        while self.unacked >= self.ingest.listener.settings.max_unacked_per_connection or committer.overloaded:
            if committer.overloaded:
                committer.stall(self)
            self._wake.clear()
            await self._wake.wait()

    async def _login(self, session: DeviceSession, login: Login) -> SessionInfo | None:
        """Check a LOGIN; the session info when accepted, None when the message must stop here."""
        ingest = self.ingest
        server_time = int(time.time())
        device: Device | None = None
        backoff = ingest.listener.login_backoff
        if await backoff.held(self.imei):
            # Repeated wrong tokens on this topic: what TCP does by holding the connection,
            # unread, before closing it. No LOGIN_ACK; the device tries again later.
            messages_dropped.labels("login_backoff").inc()
            log.info("login_held", imei=self.imei, peer=self.peer)
            return None
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
            reply = session.reject_login(status, server_time, login.seq)
            self._reply(reply)
            # The topic is the device's own (broker ACLs), so only the IMEI counts here.
            failures, delay = await backoff.refused(imei=self.imei, address=None, status=status)
            await backoff.hold(self.imei, delay)
            if worth_logging(failures):
                log.warning(
                    "login_refused",
                    imei=login.imei,
                    status=status.name,
                    peer=self.peer,
                    consecutive_failures=failures,
                    held_s=delay,
                )
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

    def queue_acks(self, seqs: list[int], status: AckStatus) -> None:
        self.unacked -= len(seqs)
        self._out += encode_acks(seqs, status)

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

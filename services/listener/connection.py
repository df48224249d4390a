"""One device's TCP connection: bytes to the sans-IO session, frames to the committer.

This is the only place that knows about the socket. Reading stops while a
login is being checked, while the connection has too many frames awaiting
durability, and while the committer is full; that is the backpressure that
keeps memory bounded when the store is slow.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, cast

from services.listener import metrics
from services.listener.login_backoff import worth_logging
from shared.logging import get_logger
from shared.protocols.xsole import (
    AckStatus,
    DeviceSession,
    Login,
    LoginStatus,
    Reply,
    SessionState,
    validate,
)
from shared.protocols.xsole.messages import encode_ack, encode_acks
from shared.store.batch import DeviceRef
from shared.store.port import Device, token_matches

if TYPE_CHECKING:
    from services.listener.server import Listener

log = get_logger("solewatch.listener")


def login_verdict(device: Device | None, token: bytes) -> LoginStatus:
    """The LOGIN_ACK status for a device record (None: unknown IMEI) and the token it presented."""
    if device is None:
        return LoginStatus.UNKNOWN_DEVICE
    if not token_matches(token, device.token_hash):
        return LoginStatus.BAD_TOKEN
    if not device.enabled:
        return LoginStatus.DISABLED
    return LoginStatus.ACCEPTED


class DeviceConnection(asyncio.Protocol):
    __slots__ = (
        "_acks",
        "_bad_frames_counted",
        "_close_timer",
        "_closing",
        "_device_ref",
        "_paused",
        "device",
        "last_activity",
        "last_seen_wall",
        "listener",
        "opened_at",
        "peer",
        "session",
        "transport",
        "unacked",
    )

    def __init__(self, listener: Listener):
        self.listener = listener
        self._device_ref = DeviceRef(0, 0, "")
        self.session = DeviceSession()
        self.transport: asyncio.Transport | None = None
        self.device: Device | None = None
        self.last_activity = self.opened_at = time.monotonic()
        self.last_seen_wall = time.time()
        self.unacked = 0
        self.peer: str = "?"
        self._acks = bytearray()
        self._paused = False
        self._closing = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._bad_frames_counted = 0

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if not self.listener.admit(self):
            metrics.connections_refused.inc()
            self._closing = True
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._close_timer is not None:
            self._close_timer.cancel()
        self.listener.forget(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        self.last_seen_wall = time.time()
        self.session.receive_data(data)
        self._process()

    # -- frames ------------------------------------------------------------------------

    def _process(self) -> None:
        session = self.session
        listener = self.listener
        committer = listener.committer
        window = listener.settings.max_unacked_per_connection
        now = self.last_seen_wall  # when these bytes arrived, even if processed after a pause
        while not self._closing:
            if self.unacked >= window:
                self._pause()
                return
            if committer.overloaded:
                committer.stall(self)
                self._pause()
                return
            if self.device is not None:
                # The hot path first: whole, in-range telemetry frames decoded in one call.
                run = session.take_telemetry(now, window - self.unacked)
                if run is not None:
                    self.unacked += len(run.seqs)
                    committer.add_run(self, self._device_ref, run, now)
                    continue
            if not self._general_path_step(now):
                break
        self._count_bad_frames()
        self._resume()

    def _general_path_step(self, now: float) -> bool:
        """Handle the next event the hot path left; False when there is none for now."""
        session = self.session
        event = session.next_event()
        if event is None:
            return False
        if type(event) is Reply:
            self._reply(event)
            return True
        if type(event) is Login:
            self._pause()
            self.listener.spawn(self._login(event))
            return False
        reason = validate(event, now)  # type: ignore[arg-type]
        if reason is not None:
            metrics.frames_rejected.inc()
            metrics.ACKS_BY_STATUS[AckStatus.REJECTED].inc()
            self._write(encode_ack(event.seq, AckStatus.REJECTED))  # type: ignore[union-attr]
            log.info("frame_rejected", imei=session.imei, seq=event.seq, reason=reason)  # type: ignore[union-attr]
            return True
        self.unacked += 1
        self.listener.committer.add_event(self, self._device_ref, event, now)  # type: ignore[arg-type]  # telemetry: a LOGIN returned above
        return True

    def _count_bad_frames(self) -> None:
        dropped = self.session.bad_frames - self._bad_frames_counted
        if dropped:
            metrics.bad_frames.inc(dropped)
            self._bad_frames_counted = self.session.bad_frames

    def _reply(self, reply: Reply) -> None:
        if reply.data:
            self._write(reply.data)
        if reply.close:
            self._count_bad_frames()
            self.close(reply.reason)
        elif reply.reason:
            log.info("frame_refused", imei=self.session.imei, reason=reply.reason)
        if reply.data[3:4] == b"\x80":  # an ACK: count it by its status byte
            metrics.ACKS_BY_STATUS[AckStatus(reply.data[8])].inc()

    async def _login(self, login: Login) -> None:
        server_time = int(time.time())
        try:
            device = await self.listener.store.device_by_imei(login.imei)
        except Exception as exc:
            # We cannot tell a good token from a bad one: let the device retry later.
            log.error("login_lookup_failed", imei=login.imei, error=str(exc))
            metrics.logins.labels("store_unavailable").inc()
            self.close("store unavailable during login")
            return
        if self._closing:
            return
        status = login_verdict(device, login.token)
        metrics.logins.labels(status.name.lower()).inc()
        if status is not LoginStatus.ACCEPTED:
            await self._refuse_login(login, status, server_time)
            return
        assert device is not None
        self.device = device
        self._device_ref = DeviceRef(device.id, device.tenant_id, device.imei)
        self._write(self.session.accept_login(login.imei, server_time, login.seq))
        log.info("device_online", imei=login.imei, firmware=f"0x{login.firmware:04x}", peer=self.peer)
        self.listener.logged_in(self)
        self._process()

    async def _refuse_login(self, login: Login, status: LoginStatus, server_time: int) -> None:
        """LOGIN_ACK with the refusal at once, then close: at once the first time, after a
        growing delay while this IMEI or this address keeps failing (login_backoff.py)."""
        reply = self.session.reject_login(status, server_time, login.seq)
        self._write(reply.data)
        self._count_bad_frames()
        address = self.transport.get_extra_info("peername") if self.transport is not None else None
        failures, delay = await self.listener.login_backoff.refused(
            imei=login.imei, address=address[0] if address else None, status=status
        )
        if worth_logging(failures):
            log.warning(
                "login_refused",
                imei=login.imei,
                status=status.name,
                peer=self.peer,
                consecutive_failures=failures,
                held_s=delay,
            )
        if delay <= 0 or self._closing:
            self.close(reply.reason)
            return
        # Reading stays paused (since the LOGIN), so nothing more is read or stored meanwhile.
        metrics.logins_held.inc()
        self._close_timer = asyncio.get_running_loop().call_later(delay, self.close, reply.reason)

    # -- acknowledgements and commands (called by the committer and the listener) ----------

    def queue_acks(self, seqs: list[int], status: AckStatus) -> None:
        self.unacked -= len(seqs)
        self._acks += encode_acks(seqs, status)

    def flush_acks(self) -> None:
        if self._acks:
            self._write(bytes(self._acks))
            self._acks.clear()
        if self._paused and not self._closing:
            self._process()  # frames held back by the window can go now

    def resume_if_possible(self) -> None:
        if self._paused and not self._closing and self.session.state is SessionState.ONLINE:
            self._process()

    def send(self, data: bytes) -> None:
        self._write(data)

    # -- socket helpers ------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self._closing:
            self.transport.write(data)

    def _pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and self.transport is not None and not self._closing:
            self._paused = False
            self.transport.resume_reading()

    def close(self, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        metrics.connections_closed.labels(_reason_label(reason)).inc()
        log.info("connection_closed", imei=self.session.imei, peer=self.peer, reason=reason)
        if self.transport is not None:
            self.transport.close()  # flushes what was written (a final ACK or LOGIN_ACK) first


def _reason_label(reason: str) -> str:
    reason = reason.lower()
    for label in (
        "bad frames",
        "length",
        "before login",
        "store",
        "malformed login",
        "no login",
        "login",
        "idle",
        "replaced",
        "draining",
    ):
        if label in reason:
            return label.replace(" ", "_")
    return "other"

"""One device's TCP connection: the TCP transport's `DeviceLink`.

This is the only place that knows about the socket. Bytes go to the sans-IO
session and from there through the shared ingest step (ingest.py). Reading
stops while a login is being checked, while the connection has too many
frames awaiting durability, and while the committer is full; that is the
backpressure that keeps memory bounded when the store is slow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, cast

from services.listener import metrics
from services.listener.ingest import Ingest, Stop
from services.listener.link import CloseReason, Session
from shared.logging import get_logger
from shared.protocols.xsole import AckStatus, DeviceSession, Login, SessionState
from shared.store.batch import DeviceRef
from shared.store.port import Device

log = get_logger("solewatch.listener")
_TAKING = (SessionState.ONLINE, SessionState.AWAITING_LOGIN)


class Connections(Protocol):
    """What a connection needs of the TCP server that accepted it."""

    ingest: Ingest

    def admit(self, conn: DeviceConnection) -> bool: ...
    def forget(self, conn: DeviceConnection) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> object: ...


class DeviceConnection(asyncio.Protocol):
    __slots__ = (
        "_acks",
        "_close_timer",
        "_ingest",
        "_paused",
        "_server",
        "address",
        "bad_frames_counted",
        "closing",
        "device",
        "device_ref",
        "last_activity",
        "last_seen_wall",
        "opened_at",
        "peer",
        "rejected_counted",
        "session",
        "transport",
        "unacked",
    )
    login_imei = None  # any IMEI may log in on a TCP connection

    def __init__(self, server: Connections, session: Callable[[], Session] = DeviceSession):
        """`session`: what makes the protocol state of the port that accepted the connection."""
        self._server = server
        self._ingest = server.ingest
        self.device_ref = DeviceRef(0, 0, "")
        self.session: Session = session()
        self.transport: asyncio.Transport | None = None
        self.device: Device | None = None
        self.last_activity = self.opened_at = time.monotonic()
        self.last_seen_wall = time.time()
        self.unacked = 0
        self.peer: str = "?"
        self.address: str | None = None
        self._acks = bytearray()
        self._paused = False
        self.closing = False
        self._close_timer: asyncio.TimerHandle | None = None
        self.bad_frames_counted = 0
        self.rejected_counted = 0

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer, self.address = f"{peer[0]}:{peer[1]}", peer[0]
        if not self._server.admit(self):
            metrics.connections_refused.inc()
            self.closing = True
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._server.forget(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        self.last_seen_wall = time.time()
        self.session.receive_data(data)
        self._process()

    # -- frames ------------------------------------------------------------------------

    def _process(self) -> None:
        # `last_seen_wall`: when these bytes arrived, even if processed after a pause.
        result = self._ingest.pump(self, self.last_seen_wall)
        if result is Stop.NEED_DATA:
            if self._paused and self.session.state in _TAKING:
                self.resume()
        elif type(result) is Login:
            self._server.spawn(self._login(result))  # reading stays paused until the verdict
        self._count_bad_frames()

    async def _login(self, login: Login) -> None:
        if await self._ingest.login(self, login):
            self._process()

    def _count_bad_frames(self) -> None:
        session = self.session
        dropped = session.bad_frames - self.bad_frames_counted
        if dropped:
            metrics.bad_frames.labels(session.protocol).inc(dropped)
            self.bad_frames_counted = session.bad_frames
        # A tracker session drops events out of range itself (XSole's are refused by the ingest step).
        rejected = session.rejected - self.rejected_counted
        if rejected:
            metrics.frames_rejected.labels(session.protocol).inc(rejected)
            self.rejected_counted = session.rejected

    # -- what the ingest step asks of the link --------------------------------------------

    async def login_accepted(self, device: Device) -> bool:
        return not self.closing  # the connection itself is the login's record

    async def login_refused(self, reason: CloseReason, hold_s: float) -> None:
        if hold_s <= 0 or self.closing:
            self.close(reason)
            return
        # Reading stays paused (since the LOGIN), so nothing more is read or stored meanwhile.
        metrics.logins_held.inc()
        self._close_timer = asyncio.get_running_loop().call_later(hold_s, self.close, reason)

    # -- acknowledgements (called by the committer) ---------------------------------------

    def queue_acks(self, seqs: list[int], status: AckStatus) -> None:
        self.unacked -= len(seqs)
        self._acks += self.session.acks(seqs, status)

    def flush_acks(self) -> None:
        if self._acks:
            self.send(bytes(self._acks))
            self._acks.clear()
        if self._paused and not self.closing:
            self._process()  # frames held back by the window can go now

    def resume_if_possible(self) -> None:
        if self._paused and not self.closing and self.session.state is SessionState.ONLINE:
            self._process()

    # -- the socket ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closing:
            self._paused = False
            self.transport.resume_reading()

    def close(self, reason: CloseReason, detail: str | None = None) -> None:
        if self.closing:
            return
        self._count_bad_frames()
        self.closing = True
        metrics.connections_closed.labels(reason.value).inc()
        log.info(
            "connection_closed",
            imei=self.session.imei,
            protocol=self.session.protocol,
            peer=self.peer,
            reason=reason.value,
            detail=detail,
        )
        if self.transport is not None:
            self.transport.close()  # flushes what was written (a final ACK or LOGIN_ACK) first

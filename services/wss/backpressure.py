"""A bound on what the server holds for a dashboard that reads too slowly.

python-engineio gives each session an unbounded `asyncio.Queue` of packets; its
writer task takes them and awaits uvicorn's WebSocket send, which waits while
the TCP connection's buffer is full. A client that stops reading (a stalled
tab, a phone on a bad link) therefore makes that queue, and the server's
memory, grow with every position of its tenant.

`SlowReaders` keeps each session's queue at most `queue_limit` positions deep:
beyond that the session is *behind*, and its positions wait here instead,
newest per device only (an older position of the same device is replaced,
counted in `wss_positions_coalesced_total`), so what waits is bounded by the
tenant's devices. They go out, oldest first, as the queue makes room. Alerts
and device status are never held back nor dropped: they go straight into the
queue (python-socketio's emit).

A session that stays behind while its connection is congested (bytes wait in
the transport: the kernel's buffers toward the client are full) for `timeout`
seconds is disconnected: its TCP connection is aborted (a graceful close would
wait behind the very bytes the client does not read), which counts in
`wss_slow_readers_disconnected_total`; the dashboard reconnects and reloads
what it shows from the REST API, as after any reconnection. A session behind
only because the server itself cannot keep up (many dashboards, a busy CPU)
has an empty transport buffer: it is coalesced, never cut, since reconnecting
everyone would only add work. A long-polling session has no connection to
look at; behind for `timeout` seconds, it is closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from shared.logging import get_logger

log = get_logger("solewatch.wss")

positions_coalesced = Counter(
    "wss_positions_coalesced_total", "Positions not sent to a slow dashboard: a newer one of the device replaced them"
)
slow_readers_disconnected = Counter(
    "wss_slow_readers_disconnected_total", "Dashboards disconnected for staying behind their live events too long"
)
sessions_behind = Gauge("wss_sessions_behind", "Dashboards whose positions are being coalesced, in this process")

SWEEP_EVERY_S = 0.05  # how often positions held for sessions behind are offered again (and checked)


class SlowReaders:
    """Per Engine.IO session, a bound on queued positions (see the module's docstring)."""

    def __init__(
        self,
        sockets: dict[str, Any],
        *,
        queue_limit: int,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._sockets = sockets  # python-engineio's, by session id: this process's sessions
        self.queue_limit = queue_limit
        self.timeout = timeout
        self._clock = clock
        self._held: dict[str, dict[str, Any]] = {}  # session -> device -> its newest position packet not queued
        self._behind_since: dict[str, float] = {}
        self._stalled_since: dict[str, float] = {}  # behind with a congested connection, since
        self._transports: dict[str, asyncio.Transport] = {}  # session -> its WebSocket's TCP connection
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def attach(self, eio_sid: str, transport: asyncio.Transport) -> None:
        """The TCP connection of `eio_sid`'s WebSocket: to see whether it is congested, and to cut it."""
        self._transports[eio_sid] = transport

    def forget(self, eio_sid: str) -> None:
        """The session ended: whatever is held for it goes."""
        self._transports.pop(eio_sid, None)
        if self._held.pop(eio_sid, None) is not None:
            sessions_behind.dec()
        self._behind_since.pop(eio_sid, None)
        self._stalled_since.pop(eio_sid, None)

    def held(self, eio_sid: str) -> int:
        """Positions held for a session behind (0 when it keeps up)."""
        return len(self._held.get(eio_sid, ()))

    def send_position(self, eio_sid: str, device: str, packet: Any) -> None:
        """Queue a position packet for a session, or hold it (newest per device) while the session is behind."""
        socket = self._sockets.get(eio_sid)
        if socket is None or socket.closed or socket.closing:
            return  # the client left while we were sending
        held = self._held.get(eio_sid)
        if held is None:
            if socket.queue.qsize() < self.queue_limit:
                socket.queue.put_nowait(packet)  # the writer task takes it; no ping check per packet, as in emit
                return
            held = self._fall_behind(eio_sid)
        if held.pop(device, None) is not None:  # re-inserted: the device waits its turn again, with its newest
            positions_coalesced.inc()
        held[device] = packet
        self._release(eio_sid, socket, held)

    def _fall_behind(self, eio_sid: str) -> dict[str, Any]:
        held: dict[str, Any] = {}
        self._held[eio_sid] = held
        sessions_behind.inc()
        if eio_sid not in self._behind_since:
            self._behind_since[eio_sid] = self._clock()
            log.warning("wss_session_behind", eio_sid=eio_sid, queued=self.queue_limit)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._sweep(), name="wss-slow-readers")
        return held

    def _release(self, eio_sid: str, socket: Any, held: dict[str, Any]) -> None:
        """Move held positions into the queue while it has room; the session catches up when none is left."""
        queue = socket.queue
        room = self.queue_limit - queue.qsize()
        while held and room > 0:
            device = next(iter(held))
            queue.put_nowait(held.pop(device))
            room -= 1
        if not held:
            del self._held[eio_sid]
            sessions_behind.dec()
            self._stalled_since.pop(eio_sid, None)
            since = self._behind_since.pop(eio_sid, None)
            if since is not None:
                log.info("wss_session_caught_up", eio_sid=eio_sid, behind_s=round(self._clock() - since, 3))

    async def _sweep(self) -> None:
        while self._held:
            await asyncio.sleep(SWEEP_EVERY_S)
            self.sweep()

    def sweep(self) -> None:
        """Release what the queues have room for; disconnect sessions stalled for longer than the timeout."""
        now = self._clock()
        for eio_sid, held in list(self._held.items()):
            socket = self._sockets.get(eio_sid)
            if socket is None or socket.closed:
                self.forget(eio_sid)
                continue
            self._release(eio_sid, socket, held)
            if eio_sid not in self._held:
                continue  # caught up
            transport = self._transports.get(eio_sid)
            if transport is not None and not transport.get_write_buffer_size():
                self._stalled_since.pop(eio_sid, None)  # the kernel takes all we write: the server is the slow one
                continue
            since = self._stalled_since.setdefault(eio_sid, now)
            if now - since > self.timeout:
                self.disconnect(eio_sid, socket, behind_s=now - self._behind_since.get(eio_sid, since))

    def disconnect(self, eio_sid: str, socket: Any, *, behind_s: float) -> None:
        slow_readers_disconnected.inc()
        log.warning(
            "wss_slow_reader_disconnected", eio_sid=eio_sid, behind_s=round(behind_s, 3), held=self.held(eio_sid)
        )
        transport = self._transports.get(eio_sid)
        self.forget(eio_sid)
        # Queued packets go with the connection: the dashboard reloads from the REST API when it reconnects.
        while not socket.queue.empty():
            socket.queue.get_nowait()
            socket.queue.task_done()
        if transport is not None:
            transport.abort()  # python-engineio's WebSocket loops then end and report the disconnect
        else:  # long-polling: no connection is held open; closing the session ends it
            closing = asyncio.create_task(socket.close(wait=False, abort=True), name="wss-slow-reader-close")
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

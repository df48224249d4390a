"""The XSole TCP listener as a runtime component.

It owns the listening socket, the set of open connections, the idle sweep and
the delivery of queued downlink commands; parsing lives in the sans-IO session
and durability in the group committer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, cast

import orjson

from services.listener import metrics
from services.listener.committer import GroupCommitter, MakeDurable
from services.listener.connection import DeviceConnection
from services.listener.login_backoff import LoginBackoff
from shared.bus import Bus, Message
from shared.bus.topics import TOPIC_COMMAND, TOPIC_DEVICE_STATUS
from shared.cache import Cache
from shared.config import Settings
from shared.logging import get_logger
from shared.store.batch import IngestBatch
from shared.store.port import CommandRecord, ListenerStore

log = get_logger("solewatch.listener")

DRAIN_TIMEOUT_S = 10.0
ONLINE_MARK_TTL_S = 90.0


def online_key(device_id: int) -> str:
    """Cache key present while a listener holds the device's connection; its value
    names that listener (host:pid), the registry of which process holds which device."""
    return f"device:{device_id}:online"


def iso_utc(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Listener:
    name = "listener"

    def __init__(
        self,
        settings: Settings,
        store: ListenerStore,
        *,
        cache: Cache | None = None,
        bus: Bus | None = None,
        make_durable: MakeDurable | None = None,
    ):
        self.settings = settings
        self.store = store
        self.cache = cache
        self.bus = bus
        self.committer = GroupCommitter(
            make_durable or self._commit_to_store,
            max_batch=settings.commit_max_batch,
            max_pending=settings.max_pending_frames,
        )
        self.connections: set[DeviceConnection] = set()
        self.online: dict[str, DeviceConnection] = {}  # imei -> its logged-in connection
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._commands_in_flight: set[int] = set()
        self._draining = False
        self.instance = f"{socket.gethostname()}:{os.getpid()}".encode()
        self.login_backoff = LoginBackoff(cache, lambda: self.settings)
        if bus is not None:
            # Commands queued by another process (the API, the notifications
            # service) announce themselves; the listener holding the device sends at once.
            bus.subscribe("listener-commands", [TOPIC_COMMAND], self._on_command_queued, broadcast=True)

    async def _commit_to_store(self, batch: IngestBatch) -> None:
        # Looked up at each commit, not bound once: the store may be wrapped after construction.
        await self.store.commit_telemetry(batch)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(cast(asyncio.Server, self._server).sockets[0].getsockname()[1])

    # -- component ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.committer.start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: DeviceConnection(self),
            self.settings.bind,
            self.settings.listener_port,
            backlog=4096,
            reuse_address=True,
            ssl=_tls_context(self.settings),
        )
        self.spawn(self._sweep_idle())
        self.spawn(self._poll_commands())
        self.spawn(self._report_progress())
        if self.cache is not None:
            self.spawn(self._keep_online_marks())
        log.info("listening", bind=self.settings.bind, port=self.port, tls=self.settings.tls_cert is not None)

    async def drain(self) -> None:
        """Stop accepting, stop reading, let every queued frame commit and be ACKed, then close."""
        self._draining = True
        if self.cache is not None:
            for conn in list(self.online.values()):
                if conn.device is not None:
                    try:
                        await self.cache.delete(online_key(conn.device.id))
                    except Exception:
                        break
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn._pause()
        try:
            await asyncio.wait_for(self.committer.flush(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.error("drain_timeout", pending="frames not committed; devices will retransmit them")
        for conn in list(self.connections):
            conn.close("listener draining")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.committer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def reload(self, settings: Settings) -> None:
        # Limits and timeouts apply at once; the port and bind stay until restart.
        self.settings = settings
        self.committer.max_batch = settings.commit_max_batch
        self.committer.max_pending = settings.max_pending_frames

    async def check_ready(self) -> str | None:
        if self._server is None or not self._server.is_serving():
            return "not accepting connections"
        return self.committer.recent_error

    # -- connections ----------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def admit(self, conn: DeviceConnection) -> bool:
        if self._draining or len(self.connections) >= self.settings.max_connections:
            return False
        self.connections.add(conn)
        metrics.connections_open.set(len(self.connections))
        return True

    def forget(self, conn: DeviceConnection) -> None:
        self.connections.discard(conn)
        metrics.connections_open.set(len(self.connections))
        imei = conn.session.imei
        if imei is not None and self.online.get(imei) is conn:
            del self.online[imei]
            if not self._draining:
                self.spawn(self._announce(conn, online=False))

    def logged_in(self, conn: DeviceConnection) -> None:
        imei = conn.session.imei
        assert imei is not None
        previous = self.online.get(imei)
        if previous is not None and previous is not conn:
            # The device reconnected before its old socket timed out: the new one wins.
            previous.close("replaced by a newer connection")
        self.online[imei] = conn
        self.spawn(self._send_pending_commands(conn, include_unanswered=True))
        self.spawn(self._announce(conn, online=True))

    async def _announce(self, conn: DeviceConnection, *, online: bool) -> None:
        """Mark the device online or offline in the cache and tell live dashboards."""
        device = conn.device
        assert device is not None
        try:
            if self.cache is not None:
                if online:
                    await self.cache.set(online_key(device.id), self.instance, ttl=ONLINE_MARK_TTL_S)
                elif conn.session.imei not in self.online:  # not already replaced by a newer connection
                    await self.cache.delete(online_key(device.id))
            if self.bus is not None:
                # The battery as of login: the next frames' positions carry fresher ones.
                status = {
                    "tenant_id": device.tenant_id,
                    "imei": device.imei,
                    "online": online,
                    "battery": device.battery,
                    "last_seen": iso_utc(conn.last_seen_wall),
                }
                await self.bus.publish(
                    TOPIC_DEVICE_STATUS, orjson.dumps(status), message_id=f"status-{device.id}-{time.time_ns()}"
                )
        except Exception as exc:  # live status is best effort; the frames are what must not be lost
            log.warning("device_status_failed", imei=device.imei, error=str(exc))

    async def _keep_online_marks(self) -> None:
        # Online marks expire unless refreshed, so a crashed listener's devices
        # do not stay "online" in a shared cache forever.
        assert self.cache is not None
        while True:
            await asyncio.sleep(ONLINE_MARK_TTL_S / 3)
            for conn in list(self.online.values()):
                if conn.device is not None:
                    await self.cache.set(online_key(conn.device.id), self.instance, ttl=ONLINE_MARK_TTL_S)

    async def _sweep_idle(self) -> None:
        while True:
            timeout, login_timeout = self.settings.idle_timeout, self.settings.login_timeout
            await asyncio.sleep(min(max(min(timeout, login_timeout) / 4, 0.05), 5.0))
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.last_activity < now - timeout:
                    conn.close(f"idle for more than {timeout:g} s")
                elif conn.device is None and conn.opened_at < now - login_timeout:
                    # Not logged in yet: a slot held without credentials is a cheap attack.
                    conn.close(f"no login within {login_timeout:g} s")

    async def _report_progress(self, every: float = 10.0) -> None:
        # So that someone watching the logs sees frames flow without any other tool.
        last = metrics.frames_stored._value.get()
        while True:
            await asyncio.sleep(every)
            stored = metrics.frames_stored._value.get()
            if stored != last or self.connections:
                log.info(
                    "ingest_progress",
                    frames_stored_per_s=round((stored - last) / every, 1),
                    frames_stored_total=int(stored),
                    connections=len(self.connections),
                    devices_online=len(self.online),
                )
            last = stored

    # -- downlink commands -------------------------------------------------------------

    async def queue_command(self, *, device_id: int, cmd: int, args: bytes = b"") -> int:
        """Persist a command for a device and send it now if the device is connected here."""
        command_id = await self.store.enqueue_command(device_id=device_id, cmd=cmd, args=args)
        for conn in list(self.online.values()):
            if conn.device is not None and conn.device.id == device_id:
                await self._send_pending_commands(conn)
        return command_id

    async def send_command(self, *, device_id: int, cmd: int, args: bytes = b"") -> int:
        """The CommandSender port, for the API in the same process."""
        return await self.queue_command(device_id=device_id, cmd=cmd, args=args)

    async def _on_command_queued(self, message: Message) -> None:
        device_id = orjson.loads(message.payload)["device_id"]
        for conn in list(self.online.values()):
            if conn.device is not None and conn.device.id == device_id:
                await self._send_pending_commands(conn)

    async def _poll_commands(self) -> None:
        # Commands queued by another process (the CLI, the API service) reach us here.
        while True:
            await asyncio.sleep(self.settings.command_poll_interval)
            if not self.online:
                continue
            try:
                pending = await self.store.commands_to_send()
            except Exception as exc:
                log.warning("command_poll_failed", error=str(exc))
                continue
            for command in pending:
                conn = self.online.get(command.imei)
                if conn is not None:
                    await self._send_command(conn, command)

    async def _send_pending_commands(self, conn: DeviceConnection, *, include_unanswered: bool = False) -> None:
        assert conn.device is not None
        try:
            # After a reconnect (include_unanswered), commands sent on the old
            # connection but never answered go again, with the same seq.
            pending = await self.store.commands_to_send([conn.device.id], include_unanswered=include_unanswered)
        except Exception as exc:
            log.warning("command_lookup_failed", imei=conn.device.imei, error=str(exc))
            return
        for command in pending:
            await self._send_command(conn, command)

    async def _send_command(self, conn: DeviceConnection, command: CommandRecord) -> None:
        if command.id in self._commands_in_flight:
            return
        self._commands_in_flight.add(command.id)
        try:
            seq = command_seq(command.id)
            conn.send(conn.session.command(seq, command.cmd, command.args))
            await self.store.mark_command_sent(command.id, seq)
            metrics.commands_sent.inc()
            log.info("command_sent", imei=command.imei, cmd=command.cmd, seq=seq, command_id=command.id)
        except Exception as exc:
            log.warning("command_send_failed", imei=command.imei, command_id=command.id, error=str(exc))
        finally:
            self._commands_in_flight.discard(command.id)


def command_seq(command_id: int) -> int:
    """The COMMAND frame seq of a command: from its id, so it is the same on every
    resend and differs between a device's last 65,535 commands."""
    return command_id & 0xFFFF


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context

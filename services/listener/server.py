"""The devices' TCP listener as a runtime component.

It owns the listening sockets (XSole's, and one per tracker protocol turned
on: CONTRACT §10, shared/protocols/registry.py), the set of open connections
and the idle sweep, and composes what every transport shares: the group committer, the
ingest step (ingest.py) and the registry of who is online where
(registry.py). Parsing lives in the sans-IO session; a transport plugs in
as described in docs/listener.md.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, cast

from services.listener import metrics
from services.listener.committer import GroupCommitter, MakeDurable
from services.listener.connection import DeviceConnection
from services.listener.ingest import Ingest
from services.listener.link import CloseReason, DeviceLink, Session
from services.listener.login_backoff import LoginBackoff
from services.listener.registry import Registry
from shared.bus import Bus
from shared.bus.topics import TOPIC_COMMAND, TOPIC_DEVICE_REVOKED
from shared.cache import Cache
from shared.config import Settings
from shared.logging import get_logger
from shared.protocols import registry as protocols
from shared.protocols.xsole import AckStatus, CommandResult
from shared.store.audit import AuditEntry
from shared.store.batch import IngestBatch
from shared.store.port import ListenerStore

log = get_logger("solewatch.listener")

DRAIN_TIMEOUT_S = 10.0


class _NoAcks:
    """The AckSink of a result the listener stores on a device's behalf (an unsupported command):
    no device is waiting for its acknowledgement."""

    def queue_acks(self, seqs: list[int], status: AckStatus) -> None:
        pass

    def flush_acks(self) -> None:
        pass

    def resume_if_possible(self) -> None:
        pass


_NO_ACKS = _NoAcks()


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
        # Tracker protocol -> its TCP port (0: any free one), from the settings; a test may add its own
        # protocol (registered with shared.protocols.registry.register) before `start`.
        self.tracker_ports: dict[str, int] = settings.tracker_ports()
        self._server: asyncio.AbstractServer | None = None
        self._tracker_servers: dict[str, asyncio.AbstractServer] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.login_backoff = LoginBackoff(cache, lambda: self.settings)
        self.registry = Registry(
            store=store,
            cache=cache,
            bus=bus,
            settings=lambda: self.settings,
            spawn=self.spawn,
            record_result=self._record_result,
        )
        self.ingest = Ingest(
            committer=self.committer,
            devices=store,
            registry=self.registry,
            login_backoff=self.login_backoff,
            settings=settings,
        )
        if bus is not None:
            # Commands queued by another process (the API, the notifications
            # service) announce themselves; the listener holding the device sends at once.
            bus.subscribe("listener-commands", [TOPIC_COMMAND], self.registry.on_command_queued, broadcast=True)
            # Every listener hears of a revoked device: whichever holds it closes its link.
            bus.subscribe(
                "listener-revocations", [TOPIC_DEVICE_REVOKED], self.registry.on_device_revoked, broadcast=True
            )

    @property
    def online(self) -> Mapping[str, DeviceLink]:
        """IMEI -> the link that holds the device in this process, whatever its transport."""
        return self.registry.online

    async def _commit_to_store(self, batch: IngestBatch) -> None:
        # Looked up at each commit, not bound once: the store may be wrapped after construction.
        await self.store.commit_telemetry(batch)

    def _record_result(self, link: DeviceLink, result: CommandResult) -> None:
        self.committer.add_event(_NO_ACKS, link.device_ref, result, time.time())

    @property
    def port(self) -> int:
        """The XSole port."""
        assert self._server is not None
        return _bound_port(self._server)

    def tracker_port(self, protocol: str) -> int:
        """The port a tracker protocol listens on (as bound: a port 0 asked for becomes a real one)."""
        return _bound_port(self._tracker_servers[protocol])

    def _servers(self) -> list[asyncio.AbstractServer]:
        return [server for server in (self._server, *self._tracker_servers.values()) if server is not None]

    # -- component ------------------------------------------------------------------------

    async def start(self) -> None:
        # Every codec first: a port turned on for a protocol whose codec is missing stops the start
        # with a clear error (protocols.CodecMissing) before anything listens.
        sessions = {protocol: protocols.codec(protocol).session for protocol in self.tracker_ports}
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
        for protocol, session in sessions.items():
            # Trackers speak plain TCP (none of these protocols has TLS on the devices' side).
            self._tracker_servers[protocol] = await loop.create_server(
                _connections(self, session),
                self.settings.bind,
                self.tracker_ports[protocol],
                backlog=4096,
                reuse_address=True,
            )
            log.info("listening", protocol=protocol, bind=self.settings.bind, port=self.tracker_port(protocol))
        self.spawn(self._sweep_idle())
        self.spawn(self.registry.poll_commands())
        self.spawn(self.registry.recheck_logins())
        self.spawn(self._report_progress())
        self.spawn(self.registry.keep_online_marks())
        log.info(
            "listening",
            protocol="xsole",
            bind=self.settings.bind,
            port=self.port,
            tls=self.settings.tls_cert is not None,
        )

    async def drain(self) -> None:
        """Stop accepting, stop reading, let every queued frame commit and be ACKed, then close."""
        await self.registry.release_online_marks()
        for server in self._servers():
            server.close()
        for conn in list(self.connections):
            conn.pause()
        try:
            await asyncio.wait_for(self.committer.flush(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.error("drain_timeout", pending="frames not committed; devices will retransmit them")
        for conn in list(self.connections):
            conn.close(CloseReason.DRAINING)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.committer.close()
        for server in self._servers():
            server.close()
            await server.wait_closed()

    async def reload(self, settings: Settings) -> None:
        # Limits and timeouts apply at once; the port and bind stay until restart.
        self.settings = settings
        self.committer.max_batch = settings.commit_max_batch
        self.committer.max_pending = settings.max_pending_frames
        self.ingest.reload(settings)

    async def check_ready(self) -> str | None:
        if self._server is None or not self._server.is_serving():
            return "not accepting connections"
        for protocol, server in self._tracker_servers.items():
            if not server.is_serving():
                return f"not accepting {protocol} connections"
        return self.committer.recent_error

    # -- connections ----------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def admit(self, conn: DeviceConnection) -> bool:
        if self.registry.draining or len(self.connections) >= self.settings.max_connections:
            return False
        self.connections.add(conn)
        metrics.connections_open.set(len(self.connections))
        return True

    def forget(self, conn: DeviceConnection) -> None:
        self.connections.discard(conn)
        metrics.connections_open.set(len(self.connections))
        self.registry.left(conn)

    async def _sweep_idle(self) -> None:
        while True:
            timeout, login_timeout = self.settings.idle_timeout, self.settings.login_timeout
            await asyncio.sleep(min(max(min(timeout, login_timeout) / 4, 0.05), 5.0))
            now = time.monotonic()
            for conn in list(self.connections):
                # Per protocol: sleeping watches are silent longer than other devices (CONTRACT §10).
                idle = self.settings.idle_timeout_of(conn.session.protocol)
                if conn.last_activity < now - idle:
                    conn.close(CloseReason.IDLE, f"idle for more than {idle:g} s")
                elif conn.device is None and conn.opened_at < now - login_timeout:
                    # Not logged in yet: a slot held without credentials is a cheap attack.
                    conn.close(CloseReason.NO_LOGIN, f"no login within {login_timeout:g} s")

    async def _report_progress(self, every: float = 10.0) -> None:
        # So that someone watching the logs sees frames flow without any other tool.
        last = metrics.stored_frames()
        while True:
            await asyncio.sleep(every)
            stored = metrics.stored_frames()
            if stored != last or self.connections:
                log.info(
                    "ingest_progress",
                    frames_stored_per_s=round((stored - last) / every, 1),
                    frames_stored_total=stored,
                    connections=len(self.connections),
                    devices_online=len(self.registry.online),
                )
            last = stored

    # -- downlink commands -------------------------------------------------------------

    async def queue_command(
        self, *, device_id: int, cmd: int, args: bytes = b"", audit: AuditEntry | None = None
    ) -> int:
        """Persist a command for a device and send it now if the device is online here."""
        return await self.registry.queue_command(device_id=device_id, cmd=cmd, args=args, audit=audit)

    async def send_command(
        self, *, device_id: int, cmd: int, args: bytes = b"", audit: AuditEntry | None = None
    ) -> int:
        """The CommandSender port, for the API in the same process."""
        return await self.registry.queue_command(device_id=device_id, cmd=cmd, args=args, audit=audit)

    async def revoke_device(self, imei: str) -> None:
        """The CommandSender port: the device's login no longer stands (the API in the same process)."""
        await self.registry.revoke(imei)


def _connections(listener: Listener, session: Callable[[], Session]) -> Callable[[], DeviceConnection]:
    """The protocol factory of a tracker port: each connection gets that protocol's session."""
    return lambda: DeviceConnection(listener, session)


def _bound_port(server: asyncio.AbstractServer) -> int:
    return int(cast(asyncio.Server, server).sockets[0].getsockname()[1])


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context

"""The distributed mode: each service its own process, over RabbitMQ, Redis and
MongoDB (or, on one machine, a SQLite file every process shares).

Every process builds its ports from the settings' URLs, serves /healthz,
/readyz (which names the unreachable backend) and /metrics, and runs the
outbox relay under a lease in Redis, so whichever process wrote an alert or a
batch of frames, exactly one relay at a time moves the outbox to the bus.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import socketio
from starlette.types import ASGIApp

from services.api.app import create_app
from services.components import AccountsBootstrap, PortComponent, build_store
from services.context import ServiceContext
from services.listener.committer import publish_to_writer
from services.listener.server import Listener
from services.listener.writer import StoreWriter
from services.notifications.service import NotificationsService
from services.wss.server import create_socketio
from shared.bus.amqp import AmqpBus
from shared.bus.outbox import CacheLease, OutboxRelay
from shared.bus.topics import TOPIC_COMMAND, TOPIC_DEVICE_REVOKED
from shared.cache.redis import RedisCache
from shared.config import Settings, SettingsError
from shared.http import HttpServer, health_app
from shared.logging import get_logger
from shared.runtime import Component, Runtime
from shared.store import DeviceStore
from shared.store.audit import AuditEntry

log = get_logger("solewatch")

SERVICES = ("listener", "api", "authn", "wss", "notifications")
# Short: the relay holding the lease may sit in another process than the writer
# that just committed, so it cannot be woken by the commit itself.
RELAY_POLL_INTERVAL_S = 0.05


class RemoteCommands:
    """The CommandSender of processes without the device's connection: the command
    is stored, then announced to the listeners; the one holding the device sends it
    at once (the others ignore it, and every listener also polls the store)."""

    def __init__(self, store: DeviceStore, bus: AmqpBus, settings: Callable[[], Settings]):
        self._store = store
        self._bus = bus
        self._settings = settings

    async def send_command(
        self, *, device_id: int, cmd: int, args: bytes = b"", audit: AuditEntry | None = None
    ) -> int:
        command_id = await self._store.enqueue_command(
            device_id=device_id, cmd=cmd, args=args, ttl_s=self._settings().command_ttl, audit=audit
        )
        try:
            await self._bus.publish(
                TOPIC_COMMAND,
                orjson.dumps({"device_id": device_id, "command_id": command_id}),
                message_id=f"command-{command_id}",
            )
        except Exception as exc:  # stored: the listeners' poll sends it
            log.warning("command_announce_failed", command_id=command_id, error=str(exc))
        return command_id

    async def revoke_device(self, imei: str) -> None:
        # Already stored, so a new LOGIN is refused anywhere; this closes the link a listener holds.
        await self._bus.publish(
            TOPIC_DEVICE_REVOKED, orjson.dumps({"imei": imei}), message_id=f"revoke-{imei}-{time.time_ns()}"
        )


class Backends:
    """The ports every distributed service process opens, and their components."""

    def __init__(self, settings: Settings, service: str):
        missing = [
            name
            for name, url in (("SOLEWATCH_AMQP_URL", settings.amqp_url), ("SOLEWATCH_REDIS_URL", settings.redis_url))
            if not url
        ]
        if missing:
            raise SettingsError(
                f"`solewatch {service}` runs one service of the distributed mode and needs {', '.join(missing)};"
                " `solewatch run` runs every service in one process without them"
            )
        self.store = build_store(settings)
        assert settings.redis_url and settings.amqp_url  # checked above, with the message a person needs
        self.cache = RedisCache(settings.redis_url)
        self.bus = AmqpBus(settings.amqp_url, reconnect_interval=settings.amqp_reconnect_interval)
        self.context = ServiceContext(
            settings=settings,
            store=self.store,
            cache=self.cache,
            bus=self.bus,
            commands=RemoteCommands(self.store, self.bus, lambda: self.context.settings),
        )

    def ports(self) -> list[Component]:
        return [
            PortComponent("store", start=self.store.open, close=self.store.close, ping=self.store.ping),
            PortComponent(
                "cache",
                start=self.cache.start,
                close=self.cache.close,
                ping=self.cache.ping,
                reload=lambda settings: self.cache.reconnect(settings.redis_url or ""),
            ),
        ]

    def relay(self) -> OutboxRelay:
        return OutboxRelay(self.store, self.bus, poll_interval=RELAY_POLL_INTERVAL_S, lease=CacheLease(self.cache))


def _listener(settings: Settings, backends: Backends) -> tuple[list[Component], Callable[[Runtime], ASGIApp]]:
    listener = Listener(
        settings, backends.store, cache=backends.cache, bus=backends.bus, make_durable=publish_to_writer(backends.bus)
    )
    writer = StoreWriter(backends.store, backends.bus)
    components: list[Component] = [*backends.ports(), writer, backends.bus, backends.relay(), listener]
    if settings.mqtt_url:
        from services.listener.mqtt import MqttIngest

        components.append(MqttIngest(settings, listener))
    return components, lambda runtime: health_app("solewatch-listener", runtime)


def _api(settings: Settings, backends: Backends) -> tuple[list[Component], Callable[[Runtime], ASGIApp]]:
    return (
        [*backends.ports(), backends.bus, backends.relay()],
        # With the auth routes too, so that its /api/v1/openapi.json (the one the proxy
        # serves) documents the whole API; the proxy sends auth requests to authn.
        lambda runtime: create_app(backends.context, runtime, live_updates=False),
    )


def _authn(settings: Settings, backends: Backends) -> tuple[list[Component], Callable[[Runtime], ASGIApp]]:
    return (
        [*backends.ports(), AccountsBootstrap(settings, backends.store), backends.bus, backends.relay()],
        lambda runtime: create_app(backends.context, runtime, live_updates=False, rest=False),
    )


def _wss(settings: Settings, backends: Backends) -> tuple[list[Component], Callable[[Runtime], ASGIApp]]:
    # Emits go through Redis pub/sub, so a client connected to any wss process
    # gets the events whichever process consumed the bus message.
    manager = socketio.AsyncRedisManager(settings.redis_url)
    sio = create_socketio(backends.context, client_manager=manager)
    return (
        [*backends.ports(), backends.bus],
        lambda runtime: create_app(backends.context, runtime, auth=False, rest=False, sio=sio),
    )


def _notifications(settings: Settings, backends: Backends) -> tuple[list[Component], Callable[[Runtime], ASGIApp]]:
    notifications = NotificationsService(backends.context)
    return (
        [*backends.ports(), notifications, backends.bus, backends.relay()],
        lambda runtime: health_app("solewatch-notifications", runtime),
    )


_LAYOUTS = {"listener": _listener, "api": _api, "authn": _authn, "wss": _wss, "notifications": _notifications}


def service_runtime(service: str, settings: Settings, load_settings: Callable[[], Settings]) -> Runtime:
    """One service of the distributed mode as a process's runtime."""
    backends = Backends(settings, service)
    components, make_app = _LAYOUTS[service](settings, backends)
    runtime = Runtime(components, load_settings)
    runtime.components.append(HttpServer(settings, make_app(runtime)))
    return runtime

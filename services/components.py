"""Runtime components wrapping the ports, and the process layouts built from them."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import orjson

from services.api.app import create_app
from services.authn.bootstrap import ensure_first_admin, ignored_admin_settings
from services.authn.state import embedded_cache
from services.authn.tokens import signing_secret
from services.context import ServiceContext
from services.listener.server import Listener
from services.notifications.service import NotificationsService
from services.startup import Preflight, StartupError
from shared.bus import Message
from shared.bus.memory import MemoryBus
from shared.bus.outbox import OutboxRelay
from shared.bus.topics import TOPIC_ALARM
from shared.config import Settings
from shared.http import HttpServer
from shared.live_feed import LiveFeed
from shared.logging import get_logger
from shared.protocols.registry import imei_problem
from shared.runtime import Component, Runtime
from shared.store import DeviceExists, Store, hash_device_token
from shared.store.audit import Actor, AuditEntry
from shared.store.sqlite import SqliteStore

if TYPE_CHECKING:  # imported where used: the simulator loads only with --simulate
    from services.simulator import SimulatedInsole

log = get_logger("solewatch")

DEFAULT_TENANT = "default"


def build_store(settings: Settings) -> Store:
    if settings.mongodb_url:
        from pymongo.uri_parser import parse_uri

        from shared.store.mongo import MongoStore

        # The database named in the URL's path (mongodb://host/NAME), else "solewatch".
        return MongoStore(settings.mongodb_url, parse_uri(settings.mongodb_url)["database"] or "solewatch")
    return SqliteStore(settings.sqlite_path, synchronous=settings.sqlite_synchronous)


class PortComponent:
    """A port's adapter as a runtime component: opened first, closed last, ready while it answers."""

    def __init__(
        self,
        name: str,
        *,
        start: Callable[[], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
        ping: Callable[[], Awaitable[None]] | None = None,
        reload: Callable[[Settings], Awaitable[None]] | None = None,
    ):
        self.name = name
        self._start, self._close, self._ping, self._reload = start, close, ping, reload

    async def start(self) -> None:
        await self._start()

    async def drain(self) -> None:
        pass

    async def close(self) -> None:
        await self._close()

    async def reload(self, settings: Settings) -> None:
        if self._reload is not None:
            await self._reload(settings)

    async def check_ready(self) -> str | None:
        if self._ping is None:
            return None
        try:
            await self._ping()
        except Exception as exc:
            return f"{self.name} unreachable: {exc}"
        return None


class SimulatorComponent:
    """Simulated devices streaming to this process's own listener (`run --simulate N`): insoles, and
    with `protocols` a mixed fleet, the N devices split over them, each to its protocol's own port."""

    name = "simulator"

    def __init__(
        self,
        store: Store,
        listener: Listener,
        count: int,
        rate: float,
        sos_per_minute: float | None = None,
        protocols: Sequence[str] = ("xsole",),
    ):
        self._store = store
        self._listener = listener
        self._count = count
        self._rate = rate
        self._sos_per_minute = sos_per_minute  # None: the simulator's default
        self._protocols = tuple(protocols)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[object]] = []

    async def start(self) -> None:
        from services.simulator import run_simulation
        from services.simulator.runner import FLEET_SOS_PER_MINUTE
        from services.simulator.tracker import run_tracker_simulation

        sos = FLEET_SOS_PER_MINUTE if self._sos_per_minute is None else self._sos_per_minute
        off = [p for p in self._protocols if p != "xsole" and p not in self._listener.tracker_ports]
        if off:
            raise StartupError(
                f"cannot simulate {', '.join(off)} devices: their port is off"
                f" (set SOLEWATCH_{off[0].upper()}_PORT, or leave them out of --simulate-protocols)"
            )
        host = self._listener.settings.bind
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        for protocol, count in split_fleet(self._count, self._protocols).items():
            share = sos * count / self._count  # the fleet's SOS rate, shared in proportion
            if protocol == "xsole":
                insoles = await register_simulated_insoles(self._store, count)
                run = run_simulation(
                    host, self._listener.port, insoles, rate=self._rate, stop=self._stop, sos_per_minute=share
                )
            else:
                imeis = await register_simulated_trackers(self._store, protocol, count)
                port = self._listener.tracker_port(protocol)
                run = run_tracker_simulation(
                    protocol, host, port, imeis, rate=self._rate, stop=self._stop, sos_per_minute=share
                )
            self._tasks.append(asyncio.create_task(run, name=f"simulator-{protocol}"))
        log.info(
            "simulating_devices", devices=self._count, protocols=self._protocols, rate=self._rate, sos_per_minute=sos
        )

    async def drain(self) -> None:
        self._stop.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=5)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("simulator_failed", task=task.get_name(), error=repr(task.exception()))

    async def close(self) -> None:
        pass

    async def reload(self, settings: Settings) -> None:
        pass

    async def check_ready(self) -> str | None:
        return None


async def register_device(
    store: Store,
    *,
    imei: str,
    name: str,
    tenant: str = DEFAULT_TENANT,
    actor: Actor | None = None,
    protocol: str = "xsole",
    model: str | None = None,
) -> tuple[dict[str, str | None], bytes]:
    """Register a device in a tenant; returns its public description and its new secret (b"" and no
    `token` in the description for a tracker protocol's device, which carries none: CONTRACT §10).
    With `actor`, the registration is written to the audit log as theirs."""
    problem = imei_problem(protocol, imei)  # before touching the store
    if problem is not None:
        raise ValueError(problem)
    tenant_id = await store.ensure_tenant(tenant)
    token = secrets.token_bytes(16) if protocol == "xsole" else b""
    detail: dict[str, object] = {"name": name} if protocol == "xsole" else {"name": name, "protocol": protocol}
    audit = None if actor is None else AuditEntry(tenant_id, actor, "device.create", "device", None, detail)
    device = await store.add_device(
        tenant_id=tenant_id,
        imei=imei,
        name=name,
        token_hash=hash_device_token(token) if token else b"",
        protocol=protocol,
        model=model,
        audit=audit,
    )
    described: dict[str, str | None] = {"imei": device.imei, "name": device.name, "tenant": tenant}
    if protocol != "xsole":
        return described | {"protocol": protocol, "model": model}, token
    return described | {"token": token.hex()}, token


async def register_simulated_insoles(store: Store, count: int) -> list[SimulatedInsole]:
    """Register (or re-key, when they exist) `count` simulated insoles in the default tenant."""
    from services.simulator import SimulatedInsole, simulated_imeis

    insoles = []
    for index, imei in enumerate(simulated_imeis(count)):
        try:
            _, token = await register_device(store, imei=imei, name=f"Simulated worker {index + 1}")
        except DeviceExists:
            token = secrets.token_bytes(16)
            await store.set_device_token(imei=imei, token_hash=hash_device_token(token))
        insoles.append(SimulatedInsole(imei=imei, token=token))
    return insoles


def split_fleet(count: int, protocols: Sequence[str]) -> dict[str, int]:
    """`count` devices shared over `protocols` as evenly as can be (the first ones get one more)."""
    if not protocols:
        raise ValueError("at least one protocol")
    base, extra = divmod(count, len(protocols))
    shares = {protocol: base + (index < extra) for index, protocol in enumerate(protocols)}
    return {protocol: share for protocol, share in shares.items() if share}


async def register_simulated_trackers(store: Store, protocol: str, count: int) -> list[str]:
    """Register (or keep, when they exist) `count` simulated devices of a tracker protocol in the
    default tenant; these carry no secret (CONTRACT §10)."""
    from services.simulator.tracker import simulated_tracker_imeis

    imeis = simulated_tracker_imeis(protocol, count)
    for index, imei in enumerate(imeis):
        try:
            await register_device(
                store,
                imei=imei,
                name=f"Simulated {protocol} {index + 1}",
                protocol=protocol,
                model=f"simulated {protocol}",
            )
        except DeviceExists:
            pass
    return imeis


async def journal_alarm(message: Message) -> None:
    """Every alarm that reaches the bus is written to the log: operators see SOS at once."""
    alarm = orjson.loads(message.payload)
    log.warning(
        "alarm_delivered",
        alarm_id=alarm["alarm_id"],
        imei=alarm["imei"],
        kind=alarm["kind"],
        seq=alarm["seq"],
        ts=alarm["ts"],
        lat=alarm["lat"],
        lon=alarm["lon"],
        message_id=message.message_id,
    )


class AccountsBootstrap:
    """Checks the token signing secret and creates the first admin when there is no user."""

    name = "accounts"

    def __init__(self, settings: Settings, store: Store):
        self._settings = settings
        self._store = store

    async def start(self) -> None:
        signing_secret(self._settings)  # refuses to start without a usable secret
        created = await ensure_first_admin(self._settings, self._store)
        if created and created.get("generated"):
            # Shown once, on stdout, for the person who just ran `solewatch run`.
            sys.stdout.write(
                f"\nsolewatch: created the first admin of tenant {created['tenant']!r}:\n"
                f"  email:    {created['email']}\n  password: {created['password']}\n"
                "Set SOLEWATCH_ADMIN_EMAIL and SOLEWATCH_ADMIN_PASSWORD to choose them yourself.\n\n"
            )
            sys.stdout.flush()
        elif created is None and (ignored := await ignored_admin_settings(self._settings, self._store)):
            # (ensure_first_admin logs first_admin_created itself.) A log line for the record,
            # and the sentence plainly for whoever started the process.
            log.warning("admin_settings_ignored", reason=ignored)
            sys.stderr.write(f"solewatch: {ignored}\n")
            sys.stderr.flush()

    async def drain(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def reload(self, settings: Settings) -> None:
        self._settings = settings

    async def check_ready(self) -> str | None:
        return None


def embedded_runtime(
    settings: Settings,
    load_settings: Callable[[], Settings],
    *,
    simulate: int = 0,
    rate: float = 0.2,
    sos_per_minute: float | None = None,
    simulate_protocols: Sequence[str] = ("xsole",),
) -> tuple[Runtime, Listener]:
    """The all-in-one process: every service over the embedded adapters."""
    store = build_store(settings)
    cache = embedded_cache(settings)  # sessions and login throttling persist; the rest stays in memory
    bus = MemoryBus()
    bus.subscribe("alarm-journal", [TOPIC_ALARM], journal_alarm)
    relay = OutboxRelay(store, bus)
    store.on_write = relay.notify  # every commit (frames, alerts) wakes the relay: one mechanism for all
    listener = Listener(settings, store, cache=cache, bus=bus)
    listener.committer.live = LiveFeed()
    context = ServiceContext(
        settings=settings, store=store, cache=cache, bus=bus, commands=listener, live=listener.committer.live
    )
    # Consumers subscribe as they are built, before the relay delivers anything.
    notifications = NotificationsService(context)
    components: list[Component] = [
        Preflight(settings),  # the data directory is ours, the ports are free: before anything is created
        PortComponent("store", start=store.open, close=store.close, ping=store.ping),
        PortComponent("cache", start=cache.start, close=cache.close, ping=cache.ping),
        PortComponent("bus", start=bus.start, close=bus.close),
        notifications,
        relay,
        listener,
    ]
    if settings.mqtt_url:
        from services.listener.mqtt import MqttIngest

        components.append(MqttIngest(settings, listener))
    runtime = Runtime(components, load_settings)
    runtime.components.append(HttpServer(settings, create_app(context, runtime)))
    # The first admin once every socket is bound: a failed start never shows a password it then forgets.
    runtime.components.append(AccountsBootstrap(settings, store))
    if simulate:
        runtime.components.append(
            SimulatorComponent(store, listener, simulate, rate, sos_per_minute, protocols=simulate_protocols)
        )
    return runtime, listener

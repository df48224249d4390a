"""The HTTP app over a real store, for API and Socket.IO tests.

Everything but the network is real: SqliteStore (or MongoStore on the
mongomock-motor emulator: `api_harness(tmp_path, adapter="mongomock")`, or the
`harness` fixture, which runs a test once per adapter), MemoryCache, MemoryBus,
access tokens from services.authn.tokens; only the downlink CommandSender is a
recorder. Tenants, users, devices, positions and alerts are written straight
through the store.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import socketio  # type: ignore[import-untyped]
from fastapi import FastAPI

from services.api import create_app
from services.authn.tokens import start_session
from services.context import ServiceContext
from shared.bus.memory import MemoryBus
from shared.cache.memory import MemoryCache
from shared.config import Settings
from shared.protocols.xsole import Position
from shared.runtime import Runtime
from shared.store import Device, DeviceStore, FrameRecord, Store, hash_device_token
from shared.store.accounts import Role
from shared.store.alerts import Alert
from shared.store.audit import AuditEntry
from shared.store.sqlite import SqliteStore
from tests.contract.mongo_shim import mongomock_store
from tests.helpers.stored import commit_frames

JWT_SECRET = "test-secret-" + "x" * 40
T0 = 1767225600  # 2026-01-01T00:00:00Z


@dataclass
class FakeCommands:
    """CommandSender without a listener: queues in the store as the real ones do (when given
    one) and records what was queued and which devices were revoked."""

    store: DeviceStore | None = None
    ttl_s: float | None = None
    sent: list[tuple[int, int, bytes]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    async def send_command(
        self, *, device_id: int, cmd: int, args: bytes = b"", audit: AuditEntry | None = None
    ) -> int:
        self.sent.append((device_id, cmd, args))
        if self.store is None:
            return len(self.sent)
        return await self.store.enqueue_command(device_id=device_id, cmd=cmd, args=args, ttl_s=self.ttl_s, audit=audit)

    async def revoke_device(self, imei: str) -> None:
        self.revoked.append(imei)


@dataclass
class Caller:
    """A user of one tenant, with a real access token."""

    tenant_id: int
    user_id: int
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class ApiHarness:
    settings: Settings
    store: Store
    cache: MemoryCache
    bus: MemoryBus
    commands: FakeCommands
    context: ServiceContext
    asgi: socketio.ASGIApp
    http: httpx.AsyncClient
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def app(self) -> FastAPI:
        return self.asgi.other_asgi_app  # type: ignore[no-any-return]

    async def tenant(self, name: str | None = None) -> int:
        return (await self.store.create_tenant(name or f"tenant-{next(self._ids)}")).id

    async def caller(self, tenant_id: int, role: Role = "admin") -> Caller:
        email = f"user{next(self._ids)}@t{tenant_id}.example"
        user = await self.store.create_user(tenant_id=tenant_id, email=email, password_hash="unused", role=role)
        pair = await start_session(self.settings, self.cache, user)
        return Caller(tenant_id, user.id, email, pair.access_token)

    async def device(self, tenant_id: int, imei: str | None = None, name: str = "worker") -> Device:
        imei = imei or f"35630704{next(self._ids):07d}"
        return await self.store.add_device(
            tenant_id=tenant_id, imei=imei, name=name, token_hash=hash_device_token(secrets.token_bytes(16))
        )

    async def store_positions(
        self, device: Device, positions: list[Position], received_at: float | None = None
    ) -> None:
        now = time.time() if received_at is None else received_at
        await commit_frames(
            self.store, [FrameRecord(device.id, device.tenant_id, device.imei, p, now) for p in positions]
        )

    async def alert(self, device: Device, *, kind: str = "sos", ts: int = T0) -> Alert:
        alarm_id = next(self._ids)
        alert, created = await self.store.raise_alert_from_alarm(
            {
                "alarm_id": alarm_id,
                "tenant_id": device.tenant_id,
                "device_id": device.id,
                "imei": device.imei,
                "kind": kind,
                "ts": ts,
                "lat": 43.6163,
                "lon": 7.0553,
                "battery": 80,
            }
        )
        assert created
        return alert


def position(seq: int, ts: int = T0, **fields: Any) -> Position:
    """The contract's worked-example POSITION, with any field replaced."""
    values: dict[str, int] = {
        "seq": seq,
        "ts": ts,
        "lat_e7": 436163000,
        "lon_e7": 70553000,
        "alt_m": 12,
        "speed_cms": 140,
        "course_ddeg": 2705,
        "sats": 9,
        "hdop_d": 8,
        "battery": 87,
        "flags": 1,
    }
    values.update(fields)
    return Position(**values)


def api_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "http_port": 0,
        "listener_port": 0,
        "bind": "127.0.0.1",
        "jwt_secret": JWT_SECRET,
        # The tracker protocols' fixed default ports stay closed in tests.
        "gt06_port": 0,
        "h02_port": 0,
        "watch_port": 0,
        "teltonika_port": 0,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


StoreAdapter = Literal["sqlite", "mongomock"]
STORE_ADAPTERS: tuple[StoreAdapter, ...] = ("sqlite", "mongomock")


@asynccontextmanager
async def api_harness(
    tmp_path: Path, *, adapter: StoreAdapter = "sqlite", **overrides: object
) -> AsyncIterator[ApiHarness]:
    """The app over that adapter; keyword arguments override settings (`smtp_host=...`)."""
    settings = api_settings(tmp_path / "data", **overrides)
    async with AsyncExitStack() as stack:
        store: Store
        if adapter == "sqlite":
            store = SqliteStore(settings.sqlite_path, synchronous="NORMAL")
            await store.open()
            stack.push_async_callback(store.close)
        else:
            store = await stack.enter_async_context(mongomock_store())
        cache, bus, commands = MemoryCache(), MemoryBus(max_attempts=1), FakeCommands(store, settings.command_ttl)
        context = ServiceContext(settings=settings, store=store, cache=cache, bus=bus, commands=commands)
        asgi = create_app(context, Runtime([], lambda: settings))
        transport = httpx.ASGITransport(app=asgi.other_asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield ApiHarness(settings, store, cache, bus, commands, context, asgi, http)


@pytest.fixture(params=STORE_ADAPTERS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ApiHarness]:
    """The app over each storage adapter in turn (the test id names it: `[sqlite]`, `[mongomock]`)."""
    async with api_harness(tmp_path, adapter=request.param) as harness:
        yield harness

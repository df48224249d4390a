"""Fixtures shared by every test layer."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.components import DEFAULT_TENANT, embedded_runtime
from services.listener.server import Listener
from shared.config import Settings
from shared.runtime import Runtime
from shared.store import Store, hash_device_token
from shared.store.sqlite import SqliteStore

# The private servers of tests/harness/servers.py, as session fixtures every test can ask for.
from tests.harness.servers import (  # noqa: F401
    _session_restartable_broker,
    amqp_server,
    mqtt_server,
    redis_server,
    restartable_broker,
)
from tests.helpers.xsole_client import XSoleTestClient


@dataclass
class EmbeddedSolewatch:
    """An all-in-one solewatch running inside the test's event loop."""

    settings: Settings
    runtime: Runtime
    listener: Listener

    @property
    def store(self) -> Store:
        return self.listener.store

    async def register(self, imei: str, *, tenant: str = DEFAULT_TENANT, enabled: bool = True) -> bytes:
        tenant_id = await self.store.ensure_tenant(tenant)
        token = secrets.token_bytes(16)
        await self.store.add_device(
            tenant_id=tenant_id, imei=imei, name=f"worker {imei[-4:]}", token_hash=hash_device_token(token)
        )
        if not enabled:
            import sqlite3

            with sqlite3.connect(self.settings.sqlite_path) as db:
                db.execute("UPDATE devices SET enabled = 0 WHERE imei = ?", (imei,))
        return token

    async def device(self) -> XSoleTestClient:
        return await XSoleTestClient.connect("127.0.0.1", self.listener.port)

    async def logged_in_device(self, imei: str) -> XSoleTestClient:
        token = await self.register(imei)
        client = await self.device()
        ack = await client.login(imei, token)
        assert ack.status == 0
        return client


# The tracker protocols' fixed default ports stay closed in tests (a test wanting one asks for it).
TRACKER_PORTS_OFF = {"gt06_port": 0, "h02_port": 0, "watch_port": 0, "teltonika_port": 0}


def embedded_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "listener_port": 0,
        "http_port": 0,
        "bind": "127.0.0.1",
        **TRACKER_PORTS_OFF,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A fresh embedded store, opened for the test and closed after it."""
    opened = SqliteStore(tmp_path / "solewatch.db", synchronous="NORMAL")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def solewatch_settings(tmp_path: Path) -> Settings:
    """Override in a test module to change listener limits (idle timeout, windows...)."""
    return embedded_settings(tmp_path / "data")


@pytest.fixture
async def solewatch(solewatch_settings: Settings) -> AsyncIterator[EmbeddedSolewatch]:
    runtime, listener = embedded_runtime(solewatch_settings, lambda: solewatch_settings)
    await runtime.start()
    try:
        yield EmbeddedSolewatch(solewatch_settings, runtime, listener)
    finally:
        await runtime.shutdown()

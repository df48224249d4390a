"""The retention purge as it runs (services/notifications/purge.py): every interval, one
process at a time under the cache lease, stopping at a chunk's end when drained, and
`solewatch purge` printing its counts in both storage modes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from services import cli
from services.notifications.purge import DAY_S, RetentionPurger
from shared.cache.memory import MemoryCache
from shared.store import Store
from shared.store.retention import PurgeChunk
from shared.store.sqlite import SqliteStore
from shared.store.tenant_settings import TenantSettings
from tests.contract.mongo_shim import mongomock_store
from tests.contract.store_data import add_device
from tests.contract.test_retention_contract import store_telemetry, times
from tests.helpers.alerting import eventually
from tests.helpers.api import api_settings

NOW = int(time.time())
OLD = NOW - 100 * DAY_S  # past the default 90 days


class Watched:
    """A store whose telemetry purge is slowed and watched: how many run at once, how many ran."""

    def __init__(self, store: Store, *, chunk_s: float = 0.02, endless: bool = False):
        self._store = store
        self._chunk_s = chunk_s
        self._endless = endless
        self.running = self.most_at_once = self.started = self.finished = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def purge_telemetry(self, tenant_id: int | None, before: int, *, limit: int = 500) -> PurgeChunk:
        self.running += 1
        self.started += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self._chunk_s)
            chunk = await self._store.purge_telemetry(tenant_id, before, limit=limit)
            return PurgeChunk(chunk.deleted, True) if self._endless else chunk
        finally:
            self.running -= 1
            self.finished += 1


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    store = SqliteStore(tmp_path / "store.db", synchronous="NORMAL")
    await store.open()
    yield store
    await store.close()


async def test_the_purge_runs_every_interval_one_process_at_a_time(store: Store, tmp_path: Path) -> None:
    device = await add_device(store)
    await store_telemetry(store, device, OLD, NOW)
    watched = Watched(store)
    cache = MemoryCache()
    await cache.start()
    settings = api_settings(tmp_path, retention_purge_interval=0.2)
    # Two processes sharing the cache, as two notifications services do in the distributed mode.
    purgers = [RetentionPurger(watched, cache, settings) for _ in range(2)]  # type: ignore[arg-type]  # a wrapper
    for purger in purgers:
        purger.start()
    try:
        await eventually(lambda: _positions(store, device.id, [NOW]), what="the first purge")
        await store_telemetry(store, device, OLD + 60, seq=50)  # arrives late: the next round takes it
        await eventually(lambda: _positions(store, device.id, [NOW]), what="a later purge")
        assert any(p.last_report and p.last_report["tenants"]["acme"]["positions"] for p in purgers)
    finally:
        for purger in purgers:
            await purger.drain()
        await cache.close()
    assert watched.most_at_once == 1  # the lease: never two purges at once
    assert watched.started == watched.finished


async def _positions(store: Store, device_id: int, expected: list[int]) -> bool:
    return [p.ts for p in await store.positions(device_id)] == expected


async def test_drain_stops_at_the_end_of_a_chunk(store: Store, tmp_path: Path) -> None:
    await add_device(store)
    watched = Watched(store, chunk_s=0.1, endless=True)  # never says it is done
    cache = MemoryCache()
    await cache.start()
    purger = RetentionPurger(watched, cache, api_settings(tmp_path))  # type: ignore[arg-type]  # a wrapper
    purger.start()
    await eventually(lambda: watched.started >= 2, what="the purge under way")
    began = time.monotonic()
    await purger.drain()
    assert time.monotonic() - began < 1.0
    assert watched.started == watched.finished  # the chunk under way was finished, not cut
    count = watched.started
    await asyncio.sleep(0.3)
    assert watched.started == count  # and none began after
    await cache.close()


async def test_the_notifications_service_purges_every_interval_and_stops_with_it(start_alerting: Any) -> None:
    alerting = await start_alerting(None, retention_purge_interval=0.2)
    device = await alerting.device()
    await store_telemetry(alerting.store, device, OLD, NOW)  # after the purge at start: the next round's
    await eventually(lambda: _positions(alerting.store, device.id, [NOW]), what="the service's purge")
    purger = alerting.service.retention
    # The rows are gone once the purge's write commits; its report is kept a moment later.
    await eventually(lambda: purger.last_report is not None, what="the purge's report")
    await alerting.stop()  # as SIGTERM drains the service
    assert purger._task is None


def run_purge(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"SOLEWATCH_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "purge"], env=env, capture_output=True, text=True, timeout=60
    )


async def test_solewatch_purge_prints_its_counts_per_tenant_and_kind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SqliteStore(data / "solewatch.db")
    await store.open()
    try:
        acme = await add_device(store)
        globex = await add_device(store, "356307042441021", tenant="globex")
        await store.set_tenant_settings(globex.tenant_id, TenantSettings(telemetry_retention_days=3650))
        for device in (acme, globex):
            await store_telemetry(store, device, OLD, OLD + 1, NOW)
    finally:
        await store.close()

    purged = run_purge(data)
    assert purged.returncode == 0, purged.stderr
    report = orjson.loads(purged.stdout)
    zero = {"positions": 0, "heartbeats": 0, "activities": 0}
    alerts = {"alerts": 0, "alert_events": 0, "notifications": 0}
    assert report == {
        "tenants": {"acme": {"positions": 2, "heartbeats": 2, "activities": 2} | alerts, "globex": zero | alerts},
        "unregistered_devices": zero,
    }
    again = run_purge(data)
    assert orjson.loads(again.stdout)["tenants"]["acme"] == zero | alerts

    store = SqliteStore(data / "solewatch.db")
    await store.open()
    try:
        assert await times(store, acme) == ([NOW],) * 3
        assert await times(store, globex) == ([OLD, OLD + 1, NOW],) * 3
        # A change made through the CLI: one entry for the tenant that lost something, none for a purge of nothing.
        [record] = await store.audit_log(acme.tenant_id)
        entry = record.entry
        assert (entry.action, entry.target_type, entry.actor.type, entry.actor.label) == (
            "retention.purge",
            "tenant",
            "system",
            "cli",
        )
        assert entry.detail["positions"] == 2 and entry.detail["telemetry_before"] < NOW - 89 * DAY_S
        assert await store.audit_log(globex.tenant_id) == []
    finally:
        await store.close()


async def test_solewatch_purge_on_mongodb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The distributed mode's store, on the emulator: the command builds it from the settings.
    async with mongomock_store() as store:
        device = await add_device(store)
        await store_telemetry(store, device, OLD, NOW)
        monkeypatch.setattr("services.components.build_store", lambda settings: store)
        await cli._purge(api_settings(tmp_path), None)  # type: ignore[arg-type]  # it takes no arguments
        report = orjson.loads(capsys.readouterr().out)
        assert report["tenants"]["acme"] == {
            "positions": 1,
            "heartbeats": 1,
            "activities": 1,
            "alerts": 0,
            "alert_events": 0,
            "notifications": 0,
        }
        assert await times(store, device) == ([NOW],) * 3
        assert [r.entry.action for r in await store.audit_log(device.tenant_id)] == ["retention.purge"]

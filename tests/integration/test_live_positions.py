"""In the all-in-one process a position reaches the dashboards as it arrives, not after its commit.

The commit (an fsync) and the outbox relay are the slow part of a frame's way; the map must not
wait behind them, while the device's ACK still does (CONTRACT rule 2) and the location visibility
(CONTRACT §8) still decides what is shown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY

from shared.http import HttpServer
from shared.protocols.xsole import Ack
from shared.store.batch import IngestBatch
from shared.store.tenant_settings import TenantSettings
from tests.conftest import EmbeddedSolewatch, embedded_settings
from tests.integration.test_wss import Dashboard, eventually

IMEI = "356307042441013"
ADMIN = {"email": "admin@acme.example", "password": "correct horse battery staple"}


@pytest.fixture
def solewatch_settings(tmp_path):
    return embedded_settings(
        tmp_path / "data", admin_email=ADMIN["email"], admin_password=ADMIN["password"], jwt_secret="live-" + "x" * 40
    )


@pytest.fixture
async def dashboard(solewatch: EmbeddedSolewatch) -> AsyncIterator[Dashboard]:
    [server] = [c for c in solewatch.runtime.components if isinstance(c, HttpServer)]
    url = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=url) as http:
        token = (await http.post("/api/v1/auth/token", json=ADMIN)).json()["access_token"]
    watching = Dashboard()
    await watching.client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)
    try:
        yield watching
    finally:
        await watching.client.disconnect()


def hold_commits(solewatch: EmbeddedSolewatch, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Commits wait until the returned event is set, like a disk that stalls."""
    release = asyncio.Event()
    store = solewatch.store
    commit = store.commit_telemetry

    async def stalled_commit(batch: IngestBatch) -> None:
        await release.wait()
        await commit(batch)

    monkeypatch.setattr(store, "commit_telemetry", stalled_commit)
    return release


async def test_the_map_shows_a_position_while_its_commit_is_still_running(solewatch, dashboard, monkeypatch):
    device = await solewatch.logged_in_device(IMEI)
    release = hold_commits(solewatch, monkeypatch)
    handed_over = REGISTRY.get_sample_value("live_position_delay_seconds_count") or 0
    await device.send(device_position := device_frame(device, 1))
    await eventually(lambda: bool(dashboard.of("position")), "the position on the map")
    [shown] = dashboard.of("position")
    assert (shown["imei"], shown["lat"]) == (IMEI, device_position.lat_e7 / 1e7)
    assert REGISTRY.get_sample_value("live_position_delay_seconds_count") == handed_over + 1  # the map's lag, timed
    with pytest.raises(TimeoutError):
        await device.recv(timeout=0.3)  # no ACK before the frame is durable
    release.set()
    ack = await device.recv()
    assert isinstance(ack, Ack) and (ack.seq, ack.status) == (device_position.seq, 0)
    [stored] = await solewatch.store.positions((await solewatch.store.device_by_imei(IMEI)).id, limit=10)
    assert stored.ts == device_position.ts
    await device.close()


async def test_a_tenant_that_hides_positions_hears_none_live(solewatch, dashboard):
    tenant_id = await solewatch.store.ensure_tenant("default")
    await solewatch.store.set_tenant_settings(tenant_id, TenantSettings(location_visibility="alerts_only"))
    device = await solewatch.logged_in_device(IMEI)
    await device.send(device_frame(device, 1))
    ack = await device.recv()
    assert isinstance(ack, Ack) and ack.status == 0  # stored and acknowledged: only the map is kept from it
    await asyncio.sleep(0.3)
    assert dashboard.of("position") == []
    await device.close()


def device_frame(device, seq):
    return device.position(ts=int(time.time()) - 10 + seq, lat_e7=436160000 + seq)

"""A sleeping 3G watch keeps its connection (issue 18, CONTRACT §10).

Watches asleep send nothing but a bare `LK` every 5 to 8 minutes, longer than the listener's idle
timeout (`SOLEWATCH_IDLE_TIMEOUT`, 300 s), so the watch port has its own
(`SOLEWATCH_WATCH_IDLE_TIMEOUT`, 600 s, never shorter than the general one). Tested here with both
scaled down to fractions of a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.components import embedded_runtime
from services.listener.server import Listener
from tests.conftest import embedded_settings
from tests.helpers.trackers import TrackerClient, imei_for

IDLE, WATCH_IDLE = 0.4, 1.6  # seconds: the general idle timeout, the watch port's
GT06_IMEI, WATCH_IMEI = imei_for("gt06", 9001), imei_for("watch", 9001)


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    settings = embedded_settings(tmp_path / "data", idle_timeout=IDLE, watch_idle_timeout=WATCH_IDLE)
    runtime, listener = embedded_runtime(settings, lambda: settings)
    listener.tracker_ports.update(gt06=0, watch=0)
    await runtime.start()
    try:
        tenant_id = await listener.store.ensure_tenant("default")
        for imei, protocol in ((GT06_IMEI, "gt06"), (WATCH_IMEI, "watch")):  # trackers carry no token
            await listener.store.add_device(
                tenant_id=tenant_id, imei=imei, name=protocol, token_hash=b"", protocol=protocol
            )
        yield listener
    finally:
        await runtime.shutdown()


async def test_a_sleeping_watch_sending_bare_lk_outlives_the_general_idle_timeout(listener):
    watch = await TrackerClient.connect(listener.tracker_port("watch"), "watch", WATCH_IMEI)
    pendant = await TrackerClient.connect(listener.tracker_port("gt06"), "gt06", GT06_IMEI)
    await pendant.log_in()
    await watch.send(watch.device.link_keep())  # the bare LK logs the watch in and is answered LK
    [answer] = await watch.receive()
    assert answer.kind == "ack" and answer.data.endswith(b"*LK]")

    # A silent GT06 connection is closed after the general idle timeout...
    started = time.monotonic()
    assert await pendant.until_closed(timeout=IDLE * 5) == b""
    assert time.monotonic() - started < WATCH_IDLE
    # ...while the watch, silent as long, is not: its own timeout is longer.
    await asyncio.sleep(WATCH_IDLE * 0.75 - (time.monotonic() - started))
    await watch.send(watch.device.link_keep())
    [answer] = await watch.receive()
    assert answer.kind == "ack"
    assert WATCH_IMEI in listener.online


async def test_a_watch_silent_past_its_own_idle_timeout_is_closed(listener):
    watch = await TrackerClient.connect(listener.tracker_port("watch"), "watch", WATCH_IMEI)
    await watch.send(watch.device.link_keep())
    await watch.receive()
    started = time.monotonic()
    assert await watch.until_closed(timeout=WATCH_IDLE * 3) == b""
    assert time.monotonic() - started >= WATCH_IDLE * 0.9

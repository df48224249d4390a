"""A slow store slows the ACKs; it never grows memory without bound and never loses a frame."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.protocols.xsole import Position
from tests.conftest import embedded_settings
from tests.helpers.stored import count_stored

DEVICES = 10
FRAMES = 300
MAX_PENDING = 100


@pytest.fixture
def solewatch_settings(tmp_path):
    return embedded_settings(
        tmp_path / "data", max_pending_frames=MAX_PENDING, max_unacked_per_connection=1000, commit_max_batch=64
    )


async def test_slow_store_pauses_reading_instead_of_queueing_everything(solewatch, monkeypatch):
    committer = solewatch.listener.committer
    real_commit = solewatch.store.commit_telemetry
    most_pending = 0

    async def slow_commit(telemetry):
        nonlocal most_pending
        most_pending = max(most_pending, committer.pending)  # the batch being committed is still counted
        await asyncio.sleep(0.02)  # a store ten times slower than usual
        await real_commit(telemetry)

    monkeypatch.setattr(solewatch.store, "commit_telemetry", slow_commit)
    devices = [await solewatch.logged_in_device(f"35630704244{i:04d}") for i in range(DEVICES)]
    now = int(time.time()) - 3600
    for device in devices:
        await device.send(
            *(Position(seq, now + seq, 436163000, 70553000, 1, 1, 1, 8, 9, 80, 1) for seq in range(2, 2 + FRAMES))
        )

    acks = await asyncio.gather(*(device.recv_acks(FRAMES, timeout=30) for device in devices))

    assert all(set(a.values()) == {0} and len(a) == FRAMES for a in acks)
    # Submitting stops at the limit; the read that reached it may add one window on top.
    assert most_pending <= MAX_PENDING + solewatch.settings.max_unacked_per_connection
    for i in range(DEVICES):
        device = await solewatch.store.device_by_imei(f"35630704244{i:04d}")
        assert (await count_stored(solewatch.store, device.id))["positions"] == FRAMES

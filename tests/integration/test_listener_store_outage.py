"""Issue 12 item 8: a store that keeps failing (a full disk) is logged as an outage, not batch by batch.

Devices still get ACK 4 for every frame the store refused (contract §1 rule 2),
and the listener's /readyz says so; the log gets one line when commits start
failing, a summary now and then while they fail, and one when they recover.
"""

from __future__ import annotations

import sqlite3

from structlog.testing import capture_logs

from shared.store.port import StoreUnavailable

IMEI = "356307042441013"
OUTAGE_EVENTS = {"commit_failing", "commit_still_failing", "commit_recovered", "commit_failed"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def full_disk(store, monkeypatch):
    """Make the store's commits fail as SQLite does on a full disk; returns a function that frees it."""
    commit = store.commit_telemetry

    async def refused(telemetry):
        raise StoreUnavailable(str(sqlite3.OperationalError("database or disk is full")))

    monkeypatch.setattr(store, "commit_telemetry", refused)
    return lambda: monkeypatch.setattr(store, "commit_telemetry", commit)


async def send_one_by_one(device, count: int) -> list[int]:
    """`count` positions, each waiting for its ACK, so each is a batch of its own; their ACK statuses."""
    statuses = []
    for _ in range(count):
        position = device.position()
        await device.send(position)
        [(seq, status)] = await device.recv_ack_list(1)
        assert seq == position.seq
        statuses.append(status)
    return statuses


def outage_lines(logs: list[dict]) -> list[dict]:
    return [line for line in logs if line["event"] in OUTAGE_EVENTS]


async def test_a_full_disk_logs_once_while_every_batch_still_gets_ack_4(solewatch, monkeypatch):
    device = await solewatch.logged_in_device(IMEI)
    free = full_disk(solewatch.store, monkeypatch)

    with capture_logs() as logs:
        statuses = await send_one_by_one(device, 200)
        assert await solewatch.listener.check_ready() is not None  # /readyz answers 503 meanwhile
        free()
        assert await send_one_by_one(device, 1) == [0]

    assert statuses == [4] * 200
    lines = outage_lines(logs)
    assert [line["event"] for line in lines] == ["commit_failing", "commit_recovered"]
    assert "disk is full" in lines[0]["error"]
    assert (lines[1]["failed_batches"], lines[1]["frames_refused"]) == (200, 200)
    await device.close()


async def test_a_long_outage_is_summed_up_periodically(solewatch, monkeypatch):
    outage = solewatch.listener.committer.outage
    clock = FakeClock()
    monkeypatch.setattr(outage, "_clock", clock)
    device = await solewatch.logged_in_device(IMEI)
    free = full_disk(solewatch.store, monkeypatch)

    with capture_logs() as logs:
        await send_one_by_one(device, 10)  # the outage begins: one line
        for _ in range(3):  # a summary period passes, then 10 more failed batches
            clock.now += outage.summary_every
            await send_one_by_one(device, 10)
        free()
        assert await send_one_by_one(device, 1) == [0]

    lines = outage_lines(logs)
    assert [line["event"] for line in lines] == ["commit_failing"] + ["commit_still_failing"] * 3 + ["commit_recovered"]
    # Each summary counts the failures since the line before it; the last line counts the whole outage.
    assert [(line["failed_batches"], line["frames_refused"]) for line in lines[1:4]] == [(10, 10)] * 3
    assert (lines[4]["failed_batches"], lines[4]["frames_refused"]) == (40, 40)
    await device.close()

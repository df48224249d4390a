"""SIGKILL the all-in-one process mid-stream: nothing acknowledged may be lost or doubled."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import orjson
import pytest

from shared.protocols.xsole import Ack, Alarm, AlarmKind, Position
from tests.helpers.process import SolewatchProcess
from tests.helpers.stored import frames_on_disk
from tests.helpers.xsole_client import XSoleTestClient

pytestmark = pytest.mark.slow

DEVICES = 12
WINDOW = 16
ADMIN = ("admin@acme.example", "correct horse battery staple")


class AckedFrames:
    def __init__(self) -> None:
        self.positions: set[tuple[str, int, int]] = set()
        self.alarms: set[tuple[str, int, int]] = set()


async def stream_until_cut(port: int, imei: str, token: bytes, acked: AckedFrames, index: int) -> None:
    """Send positions (and an SOS every 25th frame) until the connection dies, noting each ACK 0."""
    client = await XSoleTestClient.connect("127.0.0.1", port)
    assert (await client.login(imei, token)).status == 0
    sent: dict[int, tuple[str, tuple[str, int, int]]] = {}
    base_ts = int(time.time()) - 3600
    try:
        seq = 1
        while True:
            while len(sent) < WINDOW:
                seq += 1
                ts = base_ts + seq
                if seq % 25 == 0:
                    frame = Alarm(seq, ts, AlarmKind.SOS, 436160000 + index, 70550000, 80, 1)
                    sent[seq] = ("alarm", (imei, ts, seq))
                else:
                    frame = Position(seq, ts, 436160000 + index * 100 + seq, 70550000, 10, 120, 900, 8, 9, 80, 1)
                    sent[seq] = ("position", (imei, ts, seq))
                await client.send(frame)
            reply = await client.recv(timeout=10)
            if isinstance(reply, Ack) and reply.seq in sent:
                kind, key = sent.pop(reply.seq)
                if reply.status == 0:
                    (acked.alarms if kind == "alarm" else acked.positions).add(key)
    except (EOFError, ConnectionError, TimeoutError, OSError):
        return


def alarm_deliveries(log_text: str) -> set[tuple[str, int]]:
    delivered = set()
    for line in log_text.splitlines():
        if '"alarm_delivered"' in line:
            entry = orjson.loads(line)
            delivered.add((entry["imei"], entry["seq"]))
    return delivered


async def test_sigkill_loses_no_acknowledged_frame_and_replays_alarms(tmp_path):
    data_dir = tmp_path / "data"
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    admin = {"SOLEWATCH_ADMIN_EMAIL": ADMIN[0], "SOLEWATCH_ADMIN_PASSWORD": ADMIN[1]}
    first = SolewatchProcess(data_dir, "run", "--simulate", "10", "--rate", "5", log_path=log1, env=admin)
    first.start()
    try:
        imeis = [f"35630704244{i:04d}" for i in range(DEVICES)]
        tokens = first.add_devices(ADMIN, [(imei, f"crash test {i}") for i, imei in enumerate(imeis)])
        credentials = list(zip(imeis, tokens, strict=True))

        acked = AckedFrames()
        streams = [
            asyncio.create_task(stream_until_cut(first.listener_port, imei, token, acked, i))
            for i, (imei, token) in enumerate(credentials)
        ]
        while len(acked.positions) < 2000 or len(acked.alarms) < 30:
            await asyncio.sleep(0.05)
        first.kill()  # mid-stream: frames are in flight on every connection
        await asyncio.wait_for(asyncio.gather(*streams), 20)
    finally:
        first.stop_quietly()

    second = SolewatchProcess(data_dir, "run", log_path=log2)
    second.start()
    try:
        deadline = time.monotonic() + 15
        with sqlite3.connect(data_dir / "solewatch.db") as db:
            while db.execute("SELECT count(*) FROM outbox").fetchone()[0] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
    finally:
        assert second.terminate() == 0

    db = sqlite3.connect(data_dir / "solewatch.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = dict(db.execute("SELECT imei, id FROM devices"))
    on_disk = frames_on_disk(data_dir / "solewatch.db")
    for imei, ts, seq in acked.positions:
        rows = on_disk[(ids[imei], "positions", ts, seq)]
        assert rows == 1, f"acknowledged position {imei}/{seq} stored {rows} times"
    for imei, ts, seq in acked.alarms:
        rows = db.execute(
            "SELECT count(*) FROM alarms WHERE device_id = ? AND device_ts = ? AND seq = ?", (ids[imei], ts, seq)
        ).fetchone()[0]
        assert rows == 1, f"acknowledged alarm {imei}/{seq} stored {rows} times"
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0

    delivered = alarm_deliveries(log1.read_text()) | alarm_deliveries(log2.read_text())
    missing = {(imei, seq) for imei, _, seq in acked.alarms} - delivered
    assert not missing, f"acknowledged alarms never delivered to the bus: {sorted(missing)[:5]}"
    # The simulator streamed alongside the test devices, so the kill hit a busy process.
    simulated = {device_id for (device_id,) in db.execute("SELECT id FROM devices WHERE name LIKE 'Simulated%'")}
    assert any(device_id in simulated for device_id, kind, _, _ in on_disk if kind == "positions")

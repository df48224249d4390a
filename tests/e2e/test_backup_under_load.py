"""A backup taken while insoles stream holds every frame acknowledged before it began, and restores
into a fresh data directory that `solewatch run` starts on (docs/operations.md)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from shared.protocols.xsole import Ack, Position
from tests.helpers.process import SolewatchProcess
from tests.helpers.stored import frames_on_disk
from tests.helpers.xsole_client import XSoleTestClient

pytestmark = pytest.mark.slow

DEVICES = 4
WINDOW = 8
ADMIN = ("admin@acme.example", "correct horse battery staple")


class Acked:
    """Positions the server acknowledged with status 0, each with when the ACK came (monotonic)."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, int, int], float] = {}


async def stream(port: int, imei: str, token: bytes, acked: Acked, index: int, stop: asyncio.Event) -> None:
    client = await XSoleTestClient.connect("127.0.0.1", port)
    assert (await client.login(imei, token)).status == 0
    in_flight: dict[int, tuple[str, int, int]] = {}
    # A second apart from a day back: a fast stream's device times must stay behind the clock (a frame
    # more than 300 s ahead is refused), and an hour's head start ran out after 3,900 frames.
    base_ts = int(time.time()) - 86400
    seq = 1
    try:
        while not stop.is_set() or in_flight:
            while len(in_flight) < WINDOW and not stop.is_set():
                seq += 1
                ts = base_ts + seq
                lat = 436160000 + index * 1000 + seq
                await client.send(Position(seq, ts, lat, 70550000, 10, 120, 900, 8, 9, 80, 1))
                in_flight[seq] = (imei, ts, seq)
            reply = await client.recv(timeout=10)
            if isinstance(reply, Ack) and reply.seq in in_flight:
                key = in_flight.pop(reply.seq)
                if reply.status == 0:
                    acked.at[key] = time.monotonic()
    finally:
        await client.close()


async def test_backup_under_load_restores_every_frame_acknowledged_before_it(tmp_path: Path) -> None:
    admin = {"SOLEWATCH_ADMIN_EMAIL": ADMIN[0], "SOLEWATCH_ADMIN_PASSWORD": ADMIN[1]}
    first = SolewatchProcess(tmp_path / "data", "run", log_path=tmp_path / "run1.log", env=admin)
    first.start()
    backup_file = tmp_path / "backup.db"
    try:
        imeis = [f"35630704244{i:04d}" for i in range(DEVICES)]
        tokens = first.add_devices(ADMIN, [(imei, f"backup test {i}") for i, imei in enumerate(imeis)])
        credentials = list(zip(imeis, tokens, strict=True))
        acked, stop = Acked(), asyncio.Event()
        streams = [
            asyncio.create_task(stream(first.listener_port, imei, token, acked, i, stop))
            for i, (imei, token) in enumerate(credentials)
        ]
        while len(acked.at) < 2000:
            await asyncio.sleep(0.05)

        began = time.monotonic()
        backed_up = await asyncio.to_thread(first.cli, "backup", str(backup_file))  # the streams go on meanwhile
        ended = time.monotonic()
        assert backed_up.returncode == 0, backed_up.stderr
        report = orjson.loads(backed_up.stdout)
        acked_before = len(acked.at)
        await asyncio.sleep(1.5)
        refused = await asyncio.to_thread(first.cli, "restore", str(backup_file))
        assert refused.returncode == 1 and "cannot restore while solewatch" in refused.stderr, refused.stderr
        stop.set()
        await asyncio.wait_for(asyncio.gather(*streams), 20)
        assert first.terminate() == 0
    finally:
        first.stop_quietly()
    assert len(acked.at) > acked_before + 200, "the insoles stopped streaming during the backup"
    assert report["bytes"] == backup_file.stat().st_size

    second = SolewatchProcess(tmp_path / "fresh", "run", log_path=tmp_path / "run2.log")
    restored = second.cli("restore", str(backup_file))
    assert restored.returncode == 0, restored.stderr
    db_path = tmp_path / "fresh" / "solewatch.db"
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = dict(db.execute("SELECT imei, id FROM devices"))
    on_disk = frames_on_disk(db_path)
    before = [key for key, at in acked.at.items() if at < began]
    missing = [key for key in before if on_disk[(ids[key[0]], "positions", key[1], key[2])] != 1]
    assert not missing, f"{len(missing)} of {len(before)} frames acknowledged before the backup are not in it"
    # A copy of one moment: frames acknowledged well after the backup ended are not in it.
    later = [key for key, at in acked.at.items() if at > ended + 0.5]
    assert later and not [key for key in later if on_disk[(ids[key[0]], "positions", key[1], key[2])]]

    second.start()
    try:
        imei, token = credentials[0]
        client = await XSoleTestClient.connect("127.0.0.1", second.listener_port)
        assert (await client.login(imei, token)).status == 0  # the device secrets came back with the store
        await client.send(Position(60000, int(time.time()) - 10, 436160000, 70550000, 10, 0, 0, 8, 9, 80, 1))
        reply = await client.recv(timeout=10)
        assert isinstance(reply, Ack) and (reply.seq, reply.status) == (60000, 0)
        await client.close()
    finally:
        assert second.terminate() == 0

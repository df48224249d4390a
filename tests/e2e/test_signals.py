"""SIGHUP reloads settings; SIGTERM drains: the process exits 0 and loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import orjson
import pytest

from shared.protocols.xsole import Ack, Position
from tests.helpers.process import SolewatchProcess
from tests.helpers.stored import frames_on_disk
from tests.helpers.xsole_client import XSoleTestClient

pytestmark = pytest.mark.slow
IMEI = "356307042441013"


def add_device(process: SolewatchProcess) -> bytes:
    added = process.cli("devices", "add", IMEI, "--name", "signal test")
    assert added.returncode == 0, added.stderr
    return bytes.fromhex(orjson.loads(added.stdout)["token"])


async def test_sighup_applies_a_new_idle_timeout(tmp_path):
    config = tmp_path / "solewatch.toml"
    config.write_text("idle_timeout = 300\n")
    process = SolewatchProcess(
        tmp_path / "data", "run", log_path=tmp_path / "run.log", env={"SOLEWATCH_CONFIG_FILE": str(config)}
    )
    process.start()
    try:
        token = add_device(process)
        device = await XSoleTestClient.connect("127.0.0.1", process.listener_port)
        assert (await device.login(IMEI, token)).status == 0
        assert not await device.closed_by_server(timeout=1.0)  # 300 s idle timeout: stays open

        config.write_text("idle_timeout = 0.5\n")
        os.kill(process.proc.pid, signal.SIGHUP)
        assert await device.closed_by_server(timeout=8.0)
        assert '"reloaded"' in process.log_path.read_text()
    finally:
        assert process.terminate() == 0


async def test_sigterm_drains_and_keeps_every_acknowledged_frame(tmp_path):
    process = SolewatchProcess(tmp_path / "data", "run", log_path=tmp_path / "run.log")
    process.start()
    token = add_device(process)
    device = await XSoleTestClient.connect("127.0.0.1", process.listener_port)
    assert (await device.login(IMEI, token)).status == 0
    now = int(time.time())
    await device.send(
        *(Position(seq, now - 1000 + seq, 436163000, 70553000, 5, 100, 100, 8, 9, 70, 1) for seq in range(2, 802))
    )
    os.kill(process.proc.pid, signal.SIGTERM)

    acked = set()
    try:
        while True:
            frame = await device.recv(timeout=10)
            if isinstance(frame, Ack) and frame.status == 0:
                acked.add(frame.seq)
    except EOFError:
        pass  # the server closed the connection once drained
    assert process.proc.wait(20) == 0
    assert acked, "the drain acknowledged nothing"

    stored = {seq for (_, kind, _, seq) in frames_on_disk(tmp_path / "data" / "solewatch.db") if kind == "positions"}
    assert acked <= stored
    log = process.log_path.read_text()
    assert '"draining"' in log and '"stopped"' in log
    await asyncio.sleep(0)

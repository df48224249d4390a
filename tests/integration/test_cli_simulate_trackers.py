"""`solewatch simulate --protocol NAME` and `solewatch run --simulate N --simulate-protocols ...` as a user
runs them: simulated trackers log in on their protocol's port and what they send reaches the store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from services.simulator.tracker import simulated_tracker_imeis
from shared.store.sqlite import SqliteStore
from tests.helpers.process import SolewatchProcess, free_port

pytestmark = pytest.mark.slow
TRACKERS = ("gt06", "h02", "watch", "teltonika")
REPO = Path(__file__).resolve().parents[2]


def tracker_ports() -> dict[str, str]:
    return {f"SOLEWATCH_{name.upper()}_PORT": str(free_port()) for name in TRACKERS}


def final_stats(stderr: str) -> list[dict[str, object]]:
    lines = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "simulator.finished"]


async def stored_positions(data_dir: Path, imei: str) -> int:
    store = SqliteStore(data_dir / "solewatch.db")
    await store.open()
    try:
        device = await store.device_by_imei(imei)
        assert device is not None, imei
        return len(await store.positions(device.id, limit=10_000))
    finally:
        await store.close()


def device_online(log_path: Path, imei: str) -> bool:
    lines = [orjson.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    return any(line.get("event") == "device_online" and line.get("imei") == imei for line in lines)


async def command_status(data_dir: Path, command_id: int) -> str | None:
    store = SqliteStore(data_dir / "solewatch.db")
    await store.open()
    try:
        record = await store.command(command_id)
        return None if record is None else record.status
    finally:
        await store.close()


# One protocol through the CLI (the watch: no login packet, positions never answered); the simulated
# firmware of every protocol meets its real session in tests/unit/test_simulator_tracker.py, and
# `run --simulate-protocols all` below logs every protocol in over TCP.
@pytest.mark.parametrize("protocol", ["watch"])
def test_simulate_a_protocol_to_its_port_and_answer_a_command(tmp_path, protocol):
    server = SolewatchProcess(tmp_path / "data", "run", log_path=tmp_path / "run.log", env=tracker_ports()).start()
    imei = simulated_tracker_imeis(protocol, 1)[0]
    try:
        simulating = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "simulate", "--protocol", protocol, "--devices", "2",
             "--rate", "2", "--duration", "6"],
            env=server.env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while not device_online(server.log_path, imei) and time.monotonic() < deadline:
                time.sleep(0.2)
            queued = server.cli("devices", "command", imei, "locate-now")
            assert queued.returncode == 0, queued.stderr[-2000:]
            command_id = int(orjson.loads(queued.stdout)["command_id"])
            _, stderr = simulating.communicate(timeout=30)
        finally:
            if simulating.poll() is None:
                simulating.kill()
                simulating.wait(10)
        status = asyncio.run(command_status(tmp_path / "data", command_id))
    finally:
        assert server.terminate() == 0
    assert simulating.returncode == 0, stderr[-2000:]
    [summary] = final_stats(stderr)
    assert summary["protocol"] == protocol and summary["logins"] == 2 and summary["positions_sent"] > 0
    assert summary["commands_received"] == 1
    assert status == "done"  # the device answered, and the listener took the answer as its result
    for each in simulated_tracker_imeis(protocol, 2):
        assert asyncio.run(stored_positions(tmp_path / "data", each)) > 0


def test_simulate_a_protocol_whose_port_is_off_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLEWATCH_")}
    env |= {"SOLEWATCH_DATA_DIR": str(tmp_path / "data"), "SOLEWATCH_GT06_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "simulate", "--protocol", "gt06", "--duration", "1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "the gt06 port is off" in done.stderr.strip().splitlines()[-1]


def test_run_shows_a_mixed_fleet(tmp_path):
    server = SolewatchProcess(
        tmp_path / "data",
        "run",
        "--simulate",
        "10",
        "--simulate-protocols",
        "all",
        "--rate",
        "2",
        log_path=tmp_path / "run.log",
        env=tracker_ports(),
    ).start()
    try:
        deadline = time.monotonic() + 20
        online: set[str] = set()
        while time.monotonic() < deadline and len(online) < 10:
            log = server.log_path.read_text()
            lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
            online = {str(line["imei"]) for line in lines if line.get("event") == "simulator.logged_in"}
            time.sleep(0.2)
    finally:
        assert server.terminate() == 0
    # Two of each protocol, each on its own port, all logged in.
    assert len(online) == 10
    for protocol in TRACKERS:
        assert set(simulated_tracker_imeis(protocol, 2)) <= online
    assert sum(1 for imei in online if imei.startswith("35999900")) == 2  # the insoles


def test_run_refuses_to_simulate_a_protocol_whose_port_is_off(tmp_path):
    # The harness turns every tracker port off: asking for GT06 devices is one sentence and status 1.
    server = SolewatchProcess(
        tmp_path / "data", "run", "--simulate", "4", "--simulate-protocols", "xsole,gt06", log_path=tmp_path / "run.log"
    )
    with pytest.raises(RuntimeError, match="exited with 1"):
        server.start()
    last = server.log_path.read_text().strip().splitlines()[-1]
    assert last == (
        "solewatch: cannot simulate gt06 devices: their port is off"
        " (set SOLEWATCH_GT06_PORT, or leave them out of --simulate-protocols)"
    )

"""`solewatch simulate` as a user runs it: against nothing it fails, and says so once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from services.simulator import simulated_imeis
from tests.helpers.process import SolewatchProcess

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
DEVICE = f"{simulated_imeis(1)[0]}:{'ab' * 16}"


def simulate(tmp_path: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLEWATCH_")}
    env |= {"SOLEWATCH_DATA_DIR": str(tmp_path / "data"), "SOLEWATCH_BIND": "127.0.0.1"}
    # --duration bounds a run that would otherwise retry until stopped (before the fix, it ran to it and exited 0).
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "simulate",
            "--port",
            str(port),
            "--rate",
            "5",
            "--duration",
            "20",
            *args,
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def final_stats(stderr: str) -> list[dict[str, object]]:
    """The log lines carrying the run's final counts."""
    lines = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if "frames_sent" in line]


def test_nothing_listening_fails_with_one_sentence_and_one_summary(tmp_path):
    with socket.socket() as bound:  # bound, never listening: every connection is refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        done = simulate(tmp_path, port, "--device", DEVICE)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("solewatch: could not connect to a listener at 127.0.0.1:") and str(port) in last
    assert "connection refused" in last and "nothing was sent" in last
    [summary] = final_stats(done.stderr)
    assert summary["frames_sent"] == 0 and summary["connections_made"] == 0
    assert "Traceback" not in done.stderr


def test_a_run_that_streamed_exits_0_with_one_summary(tmp_path):
    server = SolewatchProcess(tmp_path / "data", "run", log_path=tmp_path / "run.log").start()
    try:
        done = server.cli("simulate", "--devices", "2", "--rate", "5", "--duration", "3")
    finally:
        assert server.terminate() == 0
    assert done.returncode == 0, done.stderr[-2000:]
    [summary] = final_stats(done.stderr)
    assert summary["logins"] == 2 and summary["frames_sent"] > 0

"""The server harness itself: failures are reported, stubborn servers are killed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.harness.servers import ServerNotReady, ServerProcess

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
)


def test_a_server_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    server = ServerProcess(
        "dies",
        [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"],
        url="x://",
        ready=lambda: False,
        log_path=tmp_path / "log",
    )
    with pytest.raises(ServerNotReady, match="exited with 3: bad config"):
        server.start(timeout=5)


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "log"
    server = ServerProcess(
        "stubborn",
        [sys.executable, "-c", IGNORES_SIGTERM],
        url="x://",
        ready=lambda: log.read_text().startswith("up"),
        log_path=log,
    )
    server.start(timeout=5)
    began = time.monotonic()
    server.stop(timeout=0.2)
    assert time.monotonic() - began < 2

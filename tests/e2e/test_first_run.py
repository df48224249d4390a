"""A newcomer's first `solewatch run`, as real processes: failures said plainly, the admin
created only by a start that succeeds, ignored admin settings said, and an SOS in the demo."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.helpers.process import TRACKER_PORTS_OFF_ENV, SolewatchProcess, free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
ADMIN = {"SOLEWATCH_ADMIN_EMAIL": "me@example.com", "SOLEWATCH_ADMIN_PASSWORD": "change me now"}


def solewatch(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    http_port: int | None = None,
    listener_port: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """`solewatch ARGS` to its end (a failed start ends by itself; 60 s is far beyond that)."""
    return run([*prefix, sys.executable, "-m", "services.cli", *args], data_dir, env, http_port, listener_port)


def run(
    argv: list[str],
    data_dir: Path,
    env: dict[str, str] | None = None,
    http_port: int | None = None,
    listener_port: int | None = None,
) -> subprocess.CompletedProcess[str]:
    settings = {
        "SOLEWATCH_DATA_DIR": str(data_dir),
        "SOLEWATCH_BIND": "127.0.0.1",
        "SOLEWATCH_HTTP_PORT": str(http_port or free_port()),
        "SOLEWATCH_LISTENER_PORT": str(listener_port or free_port()),
        **TRACKER_PORTS_OFF_ENV,
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("SOLEWATCH_")}
    return subprocess.run(
        argv, env={**base, **settings, **(env or {})}, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def assert_failed_plainly(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit status non-zero; the last line of stderr one plain sentence saying why; no traceback; no password."""
    assert done.returncode != 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("solewatch: ") and not last.startswith("{"), done.stderr[-2000:]
    for word in words:
        assert word in last, last
    assert "password" not in done.stdout


def users(data_dir: Path) -> int:
    """Users in the store (0 when it was never created)."""
    path = data_dir / "solewatch.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'users'").fetchone():
            return 0
        return db.execute("SELECT COUNT(*) FROM users").fetchone()[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


# -- item 11: bind first, then the admin; one sentence per failure ----------------------------------------


@pytest.mark.parametrize("which", ["http", "listener"])
def test_a_taken_port_is_one_sentence_and_the_rerun_still_shows_the_password(tmp_path, taken_port, which):
    ports = {"http_port": taken_port} if which == "http" else {"listener_port": taken_port}
    failed = solewatch(tmp_path / "data", "run", **ports)
    assert_failed_plainly(
        failed,
        f"port {taken_port}",
        "already in use",
        "SOLEWATCH_HTTP_PORT" if which == "http" else "SOLEWATCH_LISTENER_PORT",
    )
    assert users(tmp_path / "data") == 0  # no admin created, so none whose password was shown and lost
    if which == "listener":
        return  # the rerun below, once is enough

    process = SolewatchProcess(tmp_path / "data", "run", log_path=tmp_path / "run.log")  # the demo admin
    process.start()
    try:
        assert "password:" in process.log_path.read_text()  # the first successful start shows it
    finally:
        assert process.terminate() == 0


def test_a_data_directory_in_use_by_another_run_is_one_sentence(tmp_path):
    first = SolewatchProcess(tmp_path / "data", "run", log_path=tmp_path / "first.log").start()
    try:
        second = solewatch(tmp_path / "data", "run")  # other ports, same data directory
        assert_failed_plainly(second, "another solewatch run", f"pid {first.proc.pid}", str(tmp_path / "data"))
        assert httpx.get(f"http://127.0.0.1:{first.http_port}/readyz").status_code == 200  # untouched
    finally:
        assert first.terminate() == 0
    # Released with the process: the next start takes it.
    again = SolewatchProcess(tmp_path / "data", "run", log_path=tmp_path / "again.log").start()
    assert again.terminate() == 0


def test_a_data_directory_it_cannot_write_is_one_sentence(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o555)
    # root writes anywhere; without the capability that allows it, the permissions apply to it too.
    prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
    if prefix and not shutil.which("setpriv"):
        pytest.skip("running as root and no setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    done = solewatch(data, "run", prefix=prefix)
    assert_failed_plainly(done, str(data), "not writable", "SOLEWATCH_DATA_DIR")


def test_a_data_directory_on_a_read_only_file_system_is_one_sentence(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (util-linux) to mount a read-only file system privately")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(data)],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount in a private namespace here: {probe.stderr.strip()}")
    # In a mount namespace of its own, so the read-only mount dies with the process.
    script = f'mount -t tmpfs -o ro tmpfs "$SOLEWATCH_DATA_DIR" && exec "{sys.executable}" -m services.cli run'
    done = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], data)
    assert_failed_plainly(done, str(data), "read-only file system")


def test_the_traceback_is_there_at_the_debug_level(tmp_path, taken_port):
    done = solewatch(tmp_path / "data", "run", http_port=taken_port, env={"SOLEWATCH_LOG_LEVEL": "debug"})
    assert done.returncode != 0
    assert "Traceback" in done.stderr and done.stderr.strip().splitlines()[-1].startswith("solewatch: port ")


# -- item 12: admin settings that do nothing say so ---------------------------------------------------------


def test_admin_settings_ignored_because_an_admin_exists_are_said(tmp_path):
    demo = solewatch(tmp_path / "data", "migrate")  # e.g. the README's first command ran here before
    assert demo.returncode == 0 and "admin@solewatch.local" in demo.stdout

    process = SolewatchProcess(tmp_path / "data", "run", log_path=tmp_path / "run.log", env=ADMIN).start()
    try:
        base = f"http://127.0.0.1:{process.http_port}"
        signed_in = httpx.post(
            f"{base}/api/v1/auth/token", json={"email": "me@example.com", "password": "change me now"}
        )
        assert signed_in.status_code == 401  # what the reader meets next: now explained at start
    finally:
        assert process.terminate() == 0
    said = [line for line in process.log_path.read_text().splitlines() if line.startswith("solewatch: ")]
    assert len(said) == 1 and "SOLEWATCH_ADMIN_EMAIL and SOLEWATCH_ADMIN_PASSWORD are ignored" in said[0]
    assert str(tmp_path / "data") in said[0] and "SOLEWATCH_DATA_DIR" in said[0]


def test_admin_settings_that_match_the_admin_say_nothing(tmp_path):
    assert solewatch(tmp_path / "data", "migrate", env=ADMIN).returncode == 0  # created from them
    again = solewatch(tmp_path / "data", "migrate", env=ADMIN)  # the walkthrough, run a second time
    assert again.returncode == 0 and "ignored" not in again.stderr
    other = solewatch(tmp_path / "data", "migrate", env={**ADMIN, "SOLEWATCH_ADMIN_PASSWORD": "another password"})
    assert "SOLEWATCH_ADMIN_PASSWORD is ignored: me@example.com already exists" in other.stderr


# -- item 13: the demo's SOS, and the whole loop ------------------------------------------------------------


def test_the_demo_raises_an_sos_that_is_acknowledged_on_the_insole(tmp_path):
    # Thirty a minute instead of the default one: the same schedule (tests/unit/test_cli_sos_default.py
    # checks the default's two minutes), its first SOS within 3 s instead of 90.
    process = SolewatchProcess(
        tmp_path / "data",
        "run",
        "--simulate",
        "3",
        "--rate",
        "1",
        "--sos-per-minute",
        "30",
        log_path=tmp_path / "run.log",
        env=ADMIN,
    ).start()
    try:
        base = f"http://127.0.0.1:{process.http_port}"
        token = httpx.post(
            f"{base}/api/v1/auth/token", json={"email": "me@example.com", "password": "change me now"}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 60
        alerts: list[dict[str, object]] = []
        while not alerts and time.monotonic() < deadline:
            alerts = httpx.get(f"{base}/api/v1/alerts?status=open", headers=headers).json()["items"]
            time.sleep(0.2)
        assert alerts, "no alert from the simulated insoles"
        alert = alerts[-1]  # newest first: the oldest
        assert alert["kind"] == "sos"  # on the dashboard: the worker's marker turns red

        assert httpx.post(f"{base}/api/v1/alerts/{alert['id']}/ack", headers=headers).status_code == 200
        expected = {"event": "simulator.command", "imei": alert["imei"], "cmd": "ALARM_ACKNOWLEDGED", "status": "DONE"}
        while time.monotonic() < deadline:
            lines = [
                orjson.loads(line)
                for line in process.log_path.read_text().splitlines()
                if '"simulator.command"' in line
            ]
            if any(expected.items() <= line.items() for line in lines):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the insole {alert['imei']} never received its acknowledgement")
    finally:
        assert process.terminate() == 0

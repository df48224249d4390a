"""Running `solewatch` as a real subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# The tracker protocols' ports (CONTRACT §10) are on by default on fixed ports; a test process never
# binds them (parallel runs, a real solewatch on this machine): a test wanting one sets its own.
TRACKER_PORTS_OFF_ENV = {
    "SOLEWATCH_GT06_PORT": "0",
    "SOLEWATCH_H02_PORT": "0",
    "SOLEWATCH_WATCH_PORT": "0",
    "SOLEWATCH_TELTONIKA_PORT": "0",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SolewatchProcess:
    def __init__(self, data_dir: Path, *args: str, log_path: Path, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.args = args
        self.log_path = log_path
        self.http_port = free_port()
        self.listener_port = free_port()
        self.env = {
            **os.environ,
            "SOLEWATCH_DATA_DIR": str(data_dir),
            "SOLEWATCH_HTTP_PORT": str(self.http_port),
            "SOLEWATCH_LISTENER_PORT": str(self.listener_port),
            "SOLEWATCH_BIND": "127.0.0.1",
            **TRACKER_PORTS_OFF_ENV,
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> SolewatchProcess:
        return self.launch().wait_ready(timeout)

    def launch(self) -> SolewatchProcess:
        """The process started, not waited for: several can then start side by side (`wait_ready` each)."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *self.args],
            env=self.env,
            stdout=log,
            stderr=log,
            cwd=Path(__file__).resolve().parents[2],
        )
        return self

    def wait_ready(self, timeout: float = 20.0) -> SolewatchProcess:
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"solewatch exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"solewatch not ready after {timeout} s: {self.log_path.read_text()[-2000:]}")

    def add_devices(self, admin: tuple[str, str], devices: list[tuple[str, str]]) -> list[bytes]:
        """Devices (IMEI, name) registered through the API as that admin (email, password); their tokens.
        Quicker than `solewatch devices add`, a process (a second of start-up) each."""
        with httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", timeout=10) as http:
            signed_in = http.post("/api/v1/auth/token", json={"email": admin[0], "password": admin[1]})
            assert signed_in.status_code == 200, signed_in.text
            http.headers["Authorization"] = f"Bearer {signed_in.json()['access_token']}"
            tokens = []
            for imei, name in devices:
                added = http.post("/api/v1/devices", json={"imei": imei, "name": name})
                assert added.status_code == 201, added.text
                tokens.append(bytes.fromhex(added.json()["token"]))
        return tokens

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another `solewatch` command against the same settings (devices add...)."""
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

"""Private servers for a test session: each on 127.0.0.1, a free port and a directory of its own.

A server is a `ServerProcess` (argv, environment, readiness probe); `session_server`
turns a builder of one into a session-scoped fixture that yields its URL, skips
when the executable is not installed (scripts/test installs it) and stops the
server at teardown. Tests share a server and isolate themselves by key, queue
and topic names, not by restarting it.

To add RabbitMQ or Mosquitto, write a builder like `redis_process` and one line:
`amqp_server = session_server("amqp_server", "rabbitmq-server", rabbitmq_process)`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

READY_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
# A free port can be taken between choosing it and the server binding it: try a new one.
START_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerNotReady(RuntimeError):
    """The server exited or did not answer its readiness probe in time."""


class ServerProcess:
    """One server process: started, probed until ready, stopped with SIGTERM and then SIGKILL."""

    def __init__(self, name: str, argv: Sequence[str], *, url: str, ready: Callable[[], bool],
                 log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.url = url
        self.ready = ready
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.started_in: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT)
        deadline = began + timeout
        while True:
            if self._proc.poll() is not None:
                raise ServerNotReady(f"{self.name} exited with {self._proc.returncode}: {self._log_tail()}")
            if self.ready():
                self.started_in = time.monotonic() - began
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerNotReady(f"{self.name} not ready after {timeout} s: {self._log_tail()}")
            time.sleep(0.01)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def answers(port: int, request: bytes, expected_prefix: bytes, *, timeout: float = 0.2) -> bool:
    """True when a TCP server on 127.0.0.1:port replies to `request` with `expected_prefix`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            return sock.recv(len(expected_prefix)).startswith(expected_prefix)
    except OSError:
        return False


def redis_process(directory: Path) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        "redis-server",
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        url=f"redis://127.0.0.1:{port}/0",
        ready=lambda: answers(port, b"PING\r\n", b"+PONG"),
        log_path=directory / "redis.log",
    )


def started(build: Callable[[Path], ServerProcess], directory: Path) -> ServerProcess:
    """A ready server from `build`, trying fresh ports when one was taken in the meantime."""
    for attempt in range(START_ATTEMPTS):
        server = build(directory)
        try:
            server.start()
            return server
        except ServerNotReady:
            if attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def session_server(name: str, executable: str, build: Callable[[Path], ServerProcess]) -> Any:
    """A session-scoped fixture `name` yielding the URL of a private server built by `build`."""

    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        if shutil.which(executable) is None:
            pytest.skip(f"{executable} not installed: scripts/test installs it")
        server = started(build, tmp_path_factory.mktemp(name))
        try:
            yield server.url
        finally:
            server.stop()

    fixture.__doc__ = f"The URL of a private {executable} shared by the whole test session."
    return pytest.fixture(scope="session", name=name)(fixture)


redis_server = session_server("redis_server", "redis-server", redis_process)

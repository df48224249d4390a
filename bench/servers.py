"""Private servers on 127.0.0.1, each on a free port and a directory of its own.

A server is a `ServerProcess` (argv, environment, readiness probe), built by one
function per kind (`redis_process`, `rabbitmq_process`, `mosquitto_process`)
and started by `started`, which tries fresh ports when one was taken meanwhile.
RabbitMQ brings its own `epmd` (Erlang's port mapper) on a private port, since
the one the broker would start by itself outlives it.

The distributed benches start their RabbitMQ and Redis with these; so do the
tests (tests/harness/servers.py makes session fixtures of them).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

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

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        url: str,
        ready: Callable[[], bool],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        companion: ServerProcess | None = None,
    ) -> None:
        self.name = name
        # Started before this server and stopped after it (RabbitMQ's epmd).
        self.companion = companion
        self.argv = list(argv)
        self.url = url
        self.ready = ready
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.started_in: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        began = time.monotonic()
        if self.companion is not None and not self.companion.running:
            self.companion.start()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
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

    def stop_all(self) -> None:
        self.stop()
        if self.companion is not None:
            self.companion.stop()

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
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        url=f"redis://127.0.0.1:{port}/0",
        ready=lambda: answers(port, b"PING\r\n", b"+PONG"),
        log_path=directory / "redis.log",
    )


def epmd_process(directory: Path) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        "epmd",
        ["epmd", "-port", str(port), "-address", "127.0.0.1"],
        url=str(port),
        ready=lambda: answers(port, b"\x00\x01n", b"\x00\x00"),
        log_path=directory / "epmd.log",
    )


AMQP_PROBE = b"AMQP\x00\x00\x09\x01"
RABBITMQ_READY_TIMEOUT = 40.0


def rabbitmq_process(directory: Path) -> ServerProcess:
    """A RabbitMQ node of its own: its HOME (cookie), node name, ports, data and log dirs, no plugins."""
    epmd = epmd_process(directory)
    port, dist_port = free_port(), free_port()
    (directory / "plugins").write_text("[].\n")
    (directory / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n"
        # A test machine's disk may be nearly full; the default 50 MB alarm would block publishers.
        "disk_free_limit.absolute = 1MB\n"
    )
    env = {
        "HOME": str(directory),
        "RABBITMQ_NODENAME": f"solewatch-test-{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "plugins"),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_PORT": epmd.url,
    }
    return ServerProcess(
        "rabbitmq-server",
        ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
        url=f"amqp://guest:guest@127.0.0.1:{port}/",
        ready=lambda: answers(port, AMQP_PROBE, b"\x01", timeout=1.0),
        log_path=directory / "rabbitmq.log",
        env=env,
        companion=epmd,
    )


def mosquitto_process(directory: Path) -> ServerProcess:
    port = free_port()
    config = directory / "mosquitto.conf"
    # `user root`: without it mosquitto drops privileges and cannot write its files.
    config.write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"log_dest file {directory / 'mosquitto.log'}\n"
    )
    return ServerProcess(
        "mosquitto",
        ["mosquitto", "-c", str(config)],
        url=f"mqtt://127.0.0.1:{port}",
        # MQTT CONNECT (3.1.1, clean session, client id "p") → CONNACK 0x20.
        ready=lambda: answers(port, b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01p", b"\x20"),
        log_path=directory / "mosquitto.out",
    )


def started(build: Callable[[Path], ServerProcess], directory: Path) -> ServerProcess:
    """A ready server from `build`, trying fresh ports when one was taken in the meantime."""
    for attempt in range(START_ATTEMPTS):
        server = build(directory)
        try:
            server.start(RABBITMQ_READY_TIMEOUT if server.companion else READY_TIMEOUT)
            return server
        except ServerNotReady:
            if attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")

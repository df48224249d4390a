"""Private servers for a test session, as session-scoped fixtures.

`session_server` turns a builder of a server (bench/servers.py: `redis_process`,
`rabbitmq_process`, `mosquitto_process`) into a session-scoped fixture that
yields its URL, skips when the executable is not installed (scripts/test
installs it) and stops the server at teardown. Tests share a server and isolate
themselves by key, queue and topic names, not by restarting it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.servers import (
    RABBITMQ_READY_TIMEOUT,
    ServerNotReady,
    ServerProcess,
    answers,
    free_port,
    mosquitto_process,
    rabbitmq_process,
    redis_process,
    started,
)

__all__ = [
    "ServerNotReady",
    "ServerProcess",
    "amqp_server",
    "answers",
    "free_port",
    "mosquitto_process",
    "mqtt_server",
    "rabbitmq_process",
    "redis_process",
    "redis_server",
    "restartable_broker",
    "session_server",
    "started",
]


def session_server(name: str, executable: str, build: Callable[[Path], ServerProcess]) -> Any:
    """A session-scoped fixture `name` yielding the URL of a private server built by `build`."""

    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        if shutil.which(executable) is None:
            pytest.skip(f"{executable} not installed: scripts/test installs it")
        server = started(build, tmp_path_factory.mktemp(name))
        try:
            yield server.url
        finally:
            server.stop_all()

    fixture.__doc__ = f"The URL of a private {executable} shared by the whole test session."
    return pytest.fixture(scope="session", name=name)(fixture)


redis_server = session_server("redis_server", "redis-server", redis_process)
amqp_server = session_server("amqp_server", "rabbitmq-server", rabbitmq_process)
mqtt_server = session_server("mqtt_server", "mosquitto", mosquitto_process)


@pytest.fixture(scope="session")
def _session_restartable_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if shutil.which("rabbitmq-server") is None:
        pytest.skip("rabbitmq-server not installed: scripts/test installs it")
    server = started(rabbitmq_process, tmp_path_factory.mktemp("restartable-rabbitmq"))
    try:
        yield server
    finally:
        server.stop_all()


@pytest.fixture
def restartable_broker(_session_restartable_broker: ServerProcess) -> ServerProcess:
    """A RabbitMQ apart from `amqp_server`, which a test may stop and start again: running when the test
    begins (started again if the previous test left it stopped). One for the session: a boot takes seconds."""
    if not _session_restartable_broker.running:
        _session_restartable_broker.start(RABBITMQ_READY_TIMEOUT)
    return _session_restartable_broker

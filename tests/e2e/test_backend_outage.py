"""Distributed services while a backend is away: not ready, 503 JSON, and back by themselves.

The api service and a listener run as processes on a Redis of this test's own
(stopped and started again on the same port) and the session's RabbitMQ.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.protocols.xsole import Position
from tests.harness.servers import ServerProcess, redis_process, started
from tests.helpers.process import SolewatchProcess
from tests.helpers.stored import count_stored
from tests.helpers.xsole_client import XSoleTestClient

pytestmark = pytest.mark.slow

ADMIN = ("admin@acme.example", "correct horse battery")
IMEI = "356307042441013"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[ServerProcess]:
    server = started(redis_process, tmp_path)
    yield server
    server.stop()


def _service_env(amqp_url: str) -> dict[str, str]:
    return {
        "SOLEWATCH_AMQP_URL": amqp_url,
        "SOLEWATCH_JWT_SECRET": "outage-test-secret-0123456789-0123456789",
        "SOLEWATCH_ADMIN_EMAIL": ADMIN[0],
        "SOLEWATCH_ADMIN_PASSWORD": ADMIN[1],
        # Back on the broker within 0.2 s of its return, not up to 5 s (the default) later.
        "SOLEWATCH_AMQP_RECONNECT_INTERVAL": "0.2",
    }


def _service(tmp_path: Path, name: str, amqp_url: str, redis_url: str) -> SolewatchProcess:
    env = {**_service_env(amqp_url), "SOLEWATCH_REDIS_URL": redis_url}
    return SolewatchProcess(tmp_path / "data", name, log_path=tmp_path / f"{name}.log", env=env).start(timeout=40)


async def _until(check, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)
    return result


async def test_redis_outage_gives_503_then_service_resumes(
    tmp_path: Path, amqp_server: str, redis: ServerProcess
) -> None:
    authn = _service(tmp_path, "authn", amqp_server, redis.url)
    api = _service(tmp_path, "api", amqp_server, redis.url)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            login = await http.post(
                f"http://127.0.0.1:{authn.http_port}/api/v1/auth/token", json={"email": ADMIN[0], "password": ADMIN[1]}
            )
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            devices = f"http://127.0.0.1:{api.http_port}/api/v1/devices"
            assert (await http.get(devices, headers=headers)).status_code == 200

            redis.stop()
            answered = await http.get(devices, headers=headers)
            assert answered.status_code == 503
            assert answered.headers["Retry-After"] and "retry later" in answered.json()["detail"]
            ready = await http.get(f"http://127.0.0.1:{api.http_port}/readyz")
            assert ready.status_code == 503 and "cache" in ready.json()["detail"]

            redis.start()
            back = await _until(lambda: _status_is(http, devices, headers, 200))
            assert back.json()["items"] == []
            await _until(lambda: _ready(http, api.http_port))
    finally:
        assert api.terminate() == 0
        assert authn.terminate() == 0


async def _status_is(http: httpx.AsyncClient, url: str, headers: dict[str, str], status: int) -> httpx.Response | None:
    response = await http.get(url, headers=headers)
    return response if response.status_code == status else None


async def test_listener_answers_busy_while_the_broker_is_away_and_stores_after(
    tmp_path: Path, redis: ServerProcess, restartable_broker: ServerProcess
) -> None:
    broker = restartable_broker
    listener = _service(tmp_path, "listener", broker.url, redis.url)
    try:
        registered = listener.cli("devices", "add", IMEI, "--name", "Alice")
        assert registered.returncode == 0, registered.stderr
        token = bytes.fromhex(json.loads(registered.stdout)["token"])
        device = await XSoleTestClient.connect("127.0.0.1", listener.listener_port)
        assert (await device.login(IMEI, token)).status == 0
        now = int(time.time())
        await device.send(Position(2, now - 10, 436163000, 70553000, 12, 140, 900, 9, 8, 87, 1))
        assert await device.recv_acks(1) == {2: 0}

        await asyncio.to_thread(broker.stop)
        await device.send(Position(3, now - 5, 436163100, 70553000, 12, 140, 900, 9, 8, 87, 1))
        assert await device.recv_acks(1, timeout=15) == {3: 4}  # busy: not durable, the device keeps it
        async with httpx.AsyncClient(timeout=10) as http:
            ready = await http.get(f"http://127.0.0.1:{listener.http_port}/readyz")
            assert ready.status_code == 503 and "bus" in ready.json()["detail"]

            await asyncio.to_thread(broker.start, 40.0)
            await _until(lambda: _ready(http, listener.http_port), timeout=30)
        await device.send(Position(3, now - 5, 436163100, 70553000, 12, 140, 900, 9, 8, 87, 1))  # the retransmission
        assert await device.recv_acks(1, timeout=15) == {3: 0}
        await device.close()
        stored = await _until(lambda: _stored_positions(listener), timeout=15)
        assert stored == 2
    finally:
        assert listener.terminate() == 0


async def _ready(http: httpx.AsyncClient, port: int) -> bool:
    return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200


async def _stored_positions(listener: SolewatchProcess) -> int:
    from shared.store.sqlite import SqliteStore

    store = SqliteStore(listener.data_dir / "solewatch.db")
    await store.open()
    try:
        device = await store.device_by_imei(IMEI)
        assert device is not None
        count = (await count_stored(store, device.id))["positions"]
        return count if count == 2 else 0
    finally:
        await store.close()


async def test_sighup_moves_a_service_to_a_new_redis(tmp_path: Path, amqp_server: str, redis: ServerProcess) -> None:
    # Settings from a file, as an operator rotating a backend would change them.
    config = tmp_path / "solewatch.toml"
    config.write_text(f'redis_url = "{redis.url}"\n')
    authn = _service(tmp_path, "authn", amqp_server, redis.url)
    env = {"SOLEWATCH_CONFIG_FILE": str(config)}
    api = SolewatchProcess(
        tmp_path / "data", "api", log_path=tmp_path / "api.log", env={**_service_env(amqp_server), **env}
    ).start(timeout=40)
    (tmp_path / "second-redis").mkdir()
    second = started(redis_process, tmp_path / "second-redis")
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            login = await http.post(
                f"http://127.0.0.1:{authn.http_port}/api/v1/auth/token", json={"email": ADMIN[0], "password": ADMIN[1]}
            )
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            devices = f"http://127.0.0.1:{api.http_port}/api/v1/devices"
            assert (await http.get(devices, headers=headers)).status_code == 200

            config.write_text(f'redis_url = "{second.url}"\n')
            redis.stop()  # the old one goes away for good
            assert api.proc is not None
            api.proc.send_signal(signal.SIGHUP)
            back = await _until(lambda: _status_is(http, devices, headers, 200))
            assert back.json()["items"] == []
            await _until(lambda: _ready(http, api.http_port))
    finally:
        second.stop()
        assert api.terminate() == 0
        assert authn.terminate() == 0

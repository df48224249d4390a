"""compose/haproxy.cfg run by the real HAProxy, in front of real processes (or none).

Only the configuration's addresses are changed (tests/harness/haproxy.py), so
what these tests see is what the deployment does: errors HAProxy answers
itself are JSON like the services' own, and devices whose listener dies
reach the live one at their first reconnection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bench.common import register_devices
from bench.failover import Insole, connect_spread, login
from tests.harness.haproxy import LocalProxy, Replica, haproxy_installed, start_proxy

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not haproxy_installed(), reason="haproxy not installed")]

# Each replica on its own loopback address, as containers are on their network.
REPLICA, OTHER_REPLICA = "127.0.0.2", "127.0.0.3"


def assert_json_error(response: httpx.Response, status: int) -> None:
    """The contract's error shape: JSON {"detail": ...}, whoever answers."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json", response.text
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


@pytest.fixture
def proxy_factory(tmp_path: Path) -> Iterator[list[LocalProxy]]:
    started: list[LocalProxy] = []
    yield started
    for proxy in started:
        proxy.stop()


def proxy(
    tmp_path: Path, started: list[LocalProxy], records: dict[str, list[str]], edit: dict[str, str] | None = None
) -> LocalProxy:
    started.append(start_proxy(tmp_path, records, edit=edit))
    return started[-1]


# --- JSON errors (issue 12, item 9) ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/devices", "/api/v1/auth/token", "/socket.io/?EIO=4&transport=polling"])
async def test_no_replica_up_is_a_json_503_with_retry_after(
    tmp_path: Path, proxy_factory: list[LocalProxy], path: str
) -> None:
    # No api, authn or wss container: their names do not resolve.
    local = proxy(tmp_path, proxy_factory, {})
    async with httpx.AsyncClient(base_url=local.http_url, timeout=15) as http:
        answered = await http.get(path)
    assert_json_error(answered, 503)
    assert "retry later" in answered.json()["detail"]
    assert answered.headers["retry-after"] == "5"


async def test_a_dead_replica_still_in_dns_is_a_json_503(tmp_path: Path, proxy_factory: list[LocalProxy]) -> None:
    # The api's name still resolves, but nothing listens there any more.
    local = proxy(tmp_path, proxy_factory, {"api": [REPLICA]})
    async with httpx.AsyncClient(base_url=local.http_url, timeout=15) as http:
        answered = await http.get("/api/v1/devices")
    assert_json_error(answered, 503)
    assert answered.headers["retry-after"] == "5"


async def test_metrics_refused_by_the_proxy_is_a_json_404(tmp_path: Path, proxy_factory: list[LocalProxy]) -> None:
    local = proxy(tmp_path, proxy_factory, {})
    async with httpx.AsyncClient(base_url=local.http_url, timeout=15) as http:
        assert_json_error(await http.get("/metrics"), 404)


class MisbehavingApi:
    """An api replica that is ready (/readyz 200) but breaks its answer to /broken and never answers /hang."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> MisbehavingApi:
        self._server = await asyncio.start_server(self._serve, self.address, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            request_line = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n", 1)[0]
            path = request_line.split()[1]
            if path == b"/readyz":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                    b"Connection: close\r\n\r\n{}"
                )
            elif path.endswith(b"/broken"):
                writer.write(b"this is not HTTP\r\n\r\n")
            else:
                await reader.read()  # no answer, until HAProxy gives up and closes
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


@pytest.fixture
async def misbehaving_api_proxy(tmp_path: Path, proxy_factory: list[LocalProxy]) -> AsyncIterator[LocalProxy]:
    # The one change beyond addresses: 60 s of `timeout server` would make this test wait a minute
    # for its 504; the JSON answer does not depend on how long HAProxy waited.
    local = proxy(tmp_path, proxy_factory, {"api": [REPLICA]}, edit={"timeout server 60s": "timeout server 1s"})
    async with MisbehavingApi(REPLICA, local.service_http_port):
        async with httpx.AsyncClient(base_url=local.http_url, timeout=15) as http:
            for _ in range(100):  # until HAProxy has resolved and checked the replica
                if (await http.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
        yield local


async def test_a_replica_that_breaks_its_answer_is_a_json_502(misbehaving_api_proxy: LocalProxy) -> None:
    async with httpx.AsyncClient(base_url=misbehaving_api_proxy.http_url, timeout=15) as http:
        assert_json_error(await http.get("/api/v1/broken"), 502)


async def test_a_replica_that_does_not_answer_is_a_json_504(misbehaving_api_proxy: LocalProxy) -> None:
    async with httpx.AsyncClient(base_url=misbehaving_api_proxy.http_url, timeout=15) as http:
        assert_json_error(await http.get("/api/v1/hang"), 504)


# --- devices when a listener dies (issue 12, item 10) ------------------------------------------

DEVICES = 10


async def connections_lost(insoles: list[Insole], count: int) -> list[Insole]:
    """The `count` insoles whose connection the proxy closes (the others' stay open)."""
    waits = {
        asyncio.create_task(insole.client.closed_by_server(timeout=30)): insole
        for insole in insoles
        if insole.client is not None
    }
    lost: list[Insole] = []
    pending = set(waits)
    while len(lost) < count and pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        lost += [waits[task] for task in done if task.result()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return lost


async def test_devices_of_a_killed_listener_reach_the_live_one_at_their_first_attempt(
    tmp_path: Path,
    proxy_factory: list[LocalProxy],
    amqp_server: str,
    redis_server: str,
) -> None:
    """Without redispatch and layer-4 observation, leastconn sends each reconnecting device to the
    dead listener (it holds the fewest connections) until health checks notice: the device's
    connection is closed unanswered, again and again, for seconds."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    credentials = await register_devices(data_dir, DEVICES)
    local = proxy(tmp_path, proxy_factory, {"listener": [REPLICA, OTHER_REPLICA]})
    # A Redis database of this test's own on the session's server (online marks by device id).
    env = {"SOLEWATCH_AMQP_URL": amqp_server, "SOLEWATCH_REDIS_URL": redis_server.rsplit("/", 1)[0] + "/5"}
    replicas = [
        Replica(
            "listener",
            address,
            http_port=local.service_http_port,
            device_port=local.service_device_port,
            data_dir=data_dir,
            log_path=tmp_path / f"listener-{address}.log",
            env=env,
        )
        for address in (REPLICA, OTHER_REPLICA)
    ]
    insoles = [Insole(imei, bytes.fromhex(token)) for imei, token in credentials]
    try:
        await asyncio.gather(*(asyncio.to_thread(replica.start, 40.0) for replica in replicas))
        await connect_spread(local, replicas, insoles)
        on_killed = int(replicas[0].metric("listener_connections_open"))

        await asyncio.to_thread(replicas[0].kill)
        lost = await connections_lost(insoles, on_killed)

        # Each reconnects once, at once, as the devices all would.
        again = await asyncio.gather(*(login(local.device_port, insole) for insole in lost))
        refused = [insole.imei for insole, client in zip(lost, again, strict=True) if client is None]
        assert refused == [], "closed by the proxy without a LOGIN_ACK: sent to the dead listener"
        for insole, client in zip(lost, again, strict=True):
            insole.client = client
        assert replicas[1].metric("listener_connections_open") == DEVICES
    finally:
        for insole in insoles:
            if insole.client is not None:
                await insole.client.close()
        for replica in replicas:
            await asyncio.to_thread(replica.stop)

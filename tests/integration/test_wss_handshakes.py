"""Half-open live sessions (Engine.IO handshakes without an authenticated CONNECT) are bounded.

A real uvicorn server, raw HTTP handshakes as an attacker sends them, and the
python-socketio client as dashboards connect. Linux routes all of 127.0.0.0/8
to the loopback, so a client bound to 127.0.0.2 is another address to the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import socketio  # type: ignore[import-untyped]

from shared.http import HttpServer
from tests.helpers.alerting import eventually
from tests.helpers.api import ApiHarness, api_harness

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"
LIMIT = 5
TIMEOUT_S = 1.0
ATTACKER = "127.0.0.2"


@asynccontextmanager
async def serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, limit: int, per_address: int | None = None
) -> AsyncIterator[tuple[ApiHarness, str]]:
    monkeypatch.setenv("SOLEWATCH_WSS_MAX_HALF_OPEN_SESSIONS", str(limit))
    if per_address is not None:
        monkeypatch.setenv("SOLEWATCH_WSS_MAX_HALF_OPEN_PER_ADDRESS", str(per_address))
    monkeypatch.setenv("SOLEWATCH_WSS_HANDSHAKE_TIMEOUT", str(TIMEOUT_S))
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)  # the TCP peer is the client
    async with api_harness(tmp_path) as api:
        server = HttpServer(api.settings, api.asgi)  # type: ignore[arg-type]
        await server.start()
        try:
            yield api, f"http://127.0.0.1:{server.port}"
        finally:
            await server.close()


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[ApiHarness, str]]:
    async with serve(tmp_path, monkeypatch, limit=LIMIT) as served:
        yield served


def session_id(response: httpx.Response) -> str:
    """The sid of an Engine.IO OPEN packet (`0{"sid": ...}`)."""
    assert response.status_code == 200 and response.text.startswith("0"), response.text
    return str(httpx.Response(200, content=response.text[1:]).json()["sid"])


async def dashboard(url: str, token: str, transports: list[str] | None = None) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, auth={"token": token}, socketio_path="socket.io", wait_timeout=5, transports=transports)
    return client


async def test_abandoned_handshakes_are_bounded_refused_then_closed(served: tuple[ApiHarness, str]) -> None:
    api, url = served
    async with httpx.AsyncClient(base_url=url) as http:
        sids = [session_id(await http.get(HANDSHAKE)) for _ in range(LIMIT)]

        refused = await http.get(HANDSHAKE)
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/json"
        assert int(refused.headers["retry-after"]) >= 1
        assert "retry later" in refused.json()["detail"]
        # Not only the attacker: a dashboard with a good token waits its turn too.
        caller = await api.caller(await api.tenant(), "viewer")
        with pytest.raises(socketio.exceptions.ConnectionError):
            await dashboard(url, caller.token)

        # Once the handshake timeout has passed, the abandoned sessions are gone...
        sio = api.asgi.engineio_server
        await eventually(
            lambda: not any(sid in sio.eio.sockets for sid in sids), 10.0, what="abandoned sessions closed"
        )
        stale = await http.get(f"{HANDSHAKE}&sid={sids[0]}")
        assert stale.status_code == 400
        # ...and their places are free again.
        live = await dashboard(url, caller.token)
        try:
            assert live.connected
        finally:
            await live.disconnect()
        assert session_id(await http.get(HANDSHAKE))


async def test_a_session_whose_token_is_refused_is_closed_after_the_timeout(served: tuple[ApiHarness, str]) -> None:
    api, url = served
    async with httpx.AsyncClient(base_url=url) as http:
        sid = session_id(await http.get(HANDSHAKE))
        # A Socket.IO CONNECT with a bad token, as the client library sends it; then nothing.
        assert (await http.post(f"{HANDSHAKE}&sid={sid}", content='40{"token":"junk"}')).status_code == 200
        answer = await http.get(f"{HANDSHAKE}&sid={sid}")
        assert answer.text.startswith("44") and "unauthorized" in answer.text  # CONNECT_ERROR
        sio = api.asgi.engineio_server
        await eventually(lambda: sid not in sio.eio.sockets, 10.0, what="the unauthenticated session closed")
        assert (await http.get(f"{HANDSHAKE}&sid={sid}")).status_code == 400


async def test_authenticated_dashboards_neither_count_nor_time_out(served: tuple[ApiHarness, str]) -> None:
    api, url = served
    tenant = await api.tenant()
    # More dashboards than half-open places: each frees its place once authenticated.
    clients = [await dashboard(url, (await api.caller(tenant, "viewer")).token) for _ in range(LIMIT + 2)]
    try:
        await asyncio.sleep(TIMEOUT_S * 2)  # well past the handshake timeout
        assert all(client.connected for client in clients)
        received: list[object] = []
        clients[-1].on("device_status", received.append)
        await api.asgi.engineio_server.emit("device_status", {"imei": "1"}, to=f"tenant:{tenant}")
        await eventually(lambda: bool(received), 10.0, what="an event on a dashboard connected before the timeout")
    finally:
        for client in clients:
            await client.disconnect()


async def test_one_address_cannot_fill_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    limit, per_address = 50, 5
    async with serve(tmp_path, monkeypatch, limit=limit, per_address=per_address) as (api, url):
        transport = httpx.AsyncHTTPTransport(local_address=ATTACKER)
        async with httpx.AsyncClient(base_url=url, transport=transport) as attacker:
            # More handshakes than the whole table holds, many at once, from one address:
            # it gets its share and no more, and the rest of the table stays free.
            answers = await asyncio.gather(*(attacker.get(HANDSHAKE) for _ in range(limit + 10)))
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [200] * per_address + [503] * (limit + 10 - per_address)
            refused = await attacker.get(HANDSHAKE)
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/json"
            assert int(refused.headers["retry-after"]) >= 1
            assert "retry later" in refused.json()["detail"]

            # Dashboards from another address still get in, over polling then WebSocket or WebSocket only.
            caller = await api.caller(await api.tenant(), "viewer")
            for transports in (None, ["websocket"]):
                live = await dashboard(url, caller.token, transports)
                try:
                    assert live.connected
                finally:
                    await live.disconnect()
            assert (await attacker.get(HANDSHAKE)).status_code == 503

            # The share comes back as the attacker's sessions time out.
            sio = api.asgi.engineio_server
            sids = [session_id(answer) for answer in answers if answer.status_code == 200]
            await eventually(
                lambda: not any(sid in sio.eio.sockets for sid in sids), 10.0, what="abandoned sessions closed"
            )
            assert session_id(await attacker.get(HANDSHAKE))

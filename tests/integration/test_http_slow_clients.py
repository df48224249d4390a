"""Slow and greedy HTTP clients cannot hold the server's connections (shared.http.HttpServer).

A real uvicorn serves the whole API app with short deadlines and small caps; the
clients speak raw HTTP/1.1 over sockets, so they can connect and say nothing,
trickle a head or a body, or open more connections than allowed. Socket.IO
clients, whose requests are served for long (long-polling) or turn into
WebSockets, must not be cut by those deadlines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import socketio  # type: ignore[import-untyped]

from shared.http import HttpServer
from tests.helpers.api import ApiHarness, api_harness

HEAD_TIMEOUT = 0.5
BODY_TIMEOUT = 1.0
GIVE_UP_AFTER = 15.0  # seconds: a connection still open by then was not going to be closed


@asynccontextmanager
async def serving(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[ApiHarness, HttpServer]]:
    async with api_harness(tmp_path) as api:
        # Stopping cuts what is left at once: a Socket.IO client dropped mid long-poll leaves one (5 s by default).
        values = {"http_header_timeout": HEAD_TIMEOUT, "http_body_timeout": BODY_TIMEOUT, "http_shutdown_timeout": 0}
        values |= settings
        server = HttpServer(api.settings.model_copy(update=values), api.asgi)  # type: ignore[arg-type]
        await server.start()
        try:
            yield api, server
        finally:
            await server.close()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ApiHarness, HttpServer]]:
    async with serving(tmp_path) as pair:
        yield pair


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(server: HttpServer, source: str = "127.0.0.1") -> Connection:
    return await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = GIVE_UP_AFTER) -> bytes:
    """Everything the server sends until it closes; AssertionError if it keeps the connection open."""
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except TimeoutError:
        raise AssertionError(f"the server still held the connection after {timeout} s") from None
    except ConnectionResetError:
        return b""


async def trickle_until_closed(connection: Connection, byte: bytes = b"x") -> bytes:
    """Send one byte every 0.1 s, as a slowloris does, until the server closes; what it answered."""
    reader, writer = connection
    answer = asyncio.ensure_future(read_until_closed(reader))
    while not answer.done():
        try:
            writer.write(byte)
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.1)
    return await answer


def assert_408(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"content-type: application/json" in head.lower()
    assert body == b'{"detail":"request not received in time"}'


async def healthz(server: HttpServer, source: str = "127.0.0.1") -> bytes:
    reader, writer = await connect(server, source)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return await read_until_closed(reader, 10)
    finally:
        writer.close()


async def test_a_connection_that_sends_nothing_is_closed(served: tuple[ApiHarness, HttpServer]) -> None:
    _, server = served
    reader, writer = await connect(server)
    try:
        assert await read_until_closed(reader) == b""  # no request, so no answer (a 408 could be taken for one)
    finally:
        writer.close()


async def test_trickled_headers_are_cut_at_the_head_deadline(served: tuple[ApiHarness, HttpServer]) -> None:
    _, server = served
    reader, writer = await connect(server)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        assert_408(await trickle_until_closed((reader, writer)))
    finally:
        writer.close()


async def test_the_next_request_head_is_due_after_a_response(served: tuple[ApiHarness, HttpServer]) -> None:
    _, server = served
    reader, writer = await connect(server)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b'{"status":"alive"}'), 10)
        assert first.startswith(b"HTTP/1.1 200 ")
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # a second head, never finished
        assert_408(await trickle_until_closed((reader, writer)))
    finally:
        writer.close()


@pytest.mark.parametrize("framing", [b"Content-Length: 1048576", b"Transfer-Encoding: chunked"])
async def test_a_trickled_body_is_cut_at_the_body_deadline(
    served: tuple[ApiHarness, HttpServer], framing: bytes
) -> None:
    _, server = served
    reader, writer = await connect(server)
    try:
        writer.write(
            b"POST /api/v1/auth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + framing + b"\r\n\r\n"
        )
        # chunked: a chunk declared larger than what ever comes, so the body never ends
        byte = b" " if framing.startswith(b"Content") else b""
        if not byte:
            writer.write(b"100000\r\n")
            byte = b" "
        assert_408(await trickle_until_closed((reader, writer), byte))
    finally:
        writer.close()


async def test_headers_without_the_body_are_cut(served: tuple[ApiHarness, HttpServer]) -> None:
    _, server = served
    reader, writer = await connect(server)
    try:
        writer.write(b"POST /api/v1/auth/token HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert_408(await read_until_closed(reader))
    finally:
        writer.close()


async def test_connections_over_the_caps_are_closed_at_once(tmp_path: Path) -> None:
    # Long deadlines: the held connections stay open for the length of the test.
    async with (
        serving(tmp_path, http_header_timeout=60, http_max_connections_per_address=5, http_max_connections=8) as (
            _,
            server,
        ),
        AsyncExitStack() as held,
    ):

        async def hold(source: str) -> Connection:
            reader, writer = await connect(server, source)
            held.callback(writer.close)
            return reader, writer

        mine = [await hold("127.0.0.1") for _ in range(5)]
        reader, _ = await hold("127.0.0.1")  # the 6th from one address
        assert await read_until_closed(reader, 10) == b""
        assert b"HTTP/1.1 200 " in await healthz(server, "127.0.0.2")  # another address is served

        others = [await hold("127.0.0.2") for _ in range(3)]  # 8 open in all now
        reader, _ = await hold("127.0.0.3")
        assert await read_until_closed(reader, 10) == b""

        for connection_reader, _ in mine + others:  # the ones within the caps were left alone
            assert not connection_reader.at_eof()
        for connection_reader, writer in mine[:1]:
            writer.close()
            await read_until_closed(connection_reader, 10)
        await asyncio.sleep(0.1)  # the server sees the close
        metrics = await healthz_metrics(server)
        assert 'http_connections_refused_total{reason="per_address"}' in metrics
        assert 'http_connections_refused_total{reason="total"}' in metrics


async def healthz_metrics(server: HttpServer) -> str:
    reader, writer = await connect(server, "127.0.0.4")
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return (await read_until_closed(reader, 10)).decode()
    finally:
        writer.close()


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], None])
async def test_socketio_clients_stay_connected_past_the_deadlines(
    served: tuple[ApiHarness, HttpServer], transports: list[str] | None
) -> None:
    api, server = served
    tenant = await api.tenant()
    device = await api.device(tenant, "356307042441013")
    caller = await api.caller(tenant, "viewer")
    client = socketio.AsyncClient(reconnection=False)
    statuses: list[Any] = []
    disconnects: list[object] = []
    client.on("device_status", statuses.append)
    client.on("disconnect", lambda *reason: disconnects.append(reason))

    await client.connect(
        f"http://127.0.0.1:{server.port}",
        auth={"token": caller.token},
        transports=transports,
        socketio_path="socket.io",
        wait_timeout=5,
    )
    try:
        await asyncio.sleep(3 * max(HEAD_TIMEOUT, BODY_TIMEOUT))  # polling: a long-poll is held throughout
        assert client.connected and not disconnects
        assert client.transport() == (transports or ["websocket"])[0]
        # and it still carries live events
        status = {
            "tenant_id": tenant,
            "imei": device.imei,
            "online": True,
            "battery": 87,
            "last_seen": "2026-01-01T00:00:02Z",
        }
        await api.bus.publish("device_status", orjson.dumps(status), message_id="status-slow-clients")
        for _ in range(500):
            if statuses:
                break
            await asyncio.sleep(0.01)
        assert [s["imei"] for s in statuses] == [device.imei]
    finally:
        # Dropped, not closed politely: python-engineio's polling client then waits about 20 s for
        # its long-poll to end (not what this test is about; a browser closing a tab does not wait).
        await client.eio.disconnect(abort=True)

"""Request bodies are limited while they are read, on every route, with a 413 JSON answer.

A real uvicorn (shared.http.HttpServer) serves the whole HTTP app; the client
speaks raw HTTP/1.1 over a socket, so it can declare a body it never sends, or
stream one in chunks and see the answer arrive before it has finished.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from shared.config import Settings
from shared.http import HttpServer
from tests.helpers.api import ApiHarness, api_harness

MIB = 1024 * 1024
CHUNK = 64 * 1024
GIVE_UP_AFTER = 16 * MIB  # a server that buffers would have read all of this before answering


class Served:
    def __init__(self, harness: ApiHarness, server: HttpServer, settings: Settings):
        self.harness = harness
        self.server = server
        self.server_settings = settings

    async def request(self, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        """Send a whole request; the answer, read until the server closes or 10 s pass."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        try:
            writer.write(head.encode() + body)
            await writer.drain()
            return _parse(await asyncio.wait_for(_read_answer(reader), 10))
        finally:
            writer.close()

    async def upload_chunked(self, path: str, *, query: str = "") -> tuple[int, dict[str, str], bytes, int]:
        """Stream an endless chunked JSON body until an answer comes; also how many body bytes were sent."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        sent = 0
        try:
            writer.write(
                f"POST {path}{query} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            answer = asyncio.ensure_future(_read_answer(reader))
            chunk = b"%x\r\n" % CHUNK + b" " * CHUNK + b"\r\n"
            while not answer.done() and sent < GIVE_UP_AFTER:
                writer.write(chunk)
                sent += CHUNK
                try:
                    await writer.drain()
                except ConnectionError:
                    break  # the server answered and closed: the answer is in the reader's buffer
                await asyncio.sleep(0)
            if not answer.done():
                writer.write(b"0\r\n\r\n")  # end the body: a server that buffers answers now
            status, headers, body = _parse(await asyncio.wait_for(answer, 10))
            return status, headers, body, sent
        finally:
            writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    data = await reader.readuntil(b"\r\n\r\n")
    head = data.decode("latin-1").lower()
    if "content-length:" in head:
        length = int(head.split("content-length:")[1].split("\r\n")[0])
        return data + await reader.readexactly(length)
    return data + await reader.read()  # chunked or close-delimited: until the server closes


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """Start the whole HTTP app of `solewatch run` on a real port, with settings overridden."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: object) -> Served:
            harness = await stack.enter_async_context(api_harness(tmp_path))
            settings = Settings(**(harness.settings.model_dump() | overrides))  # type: ignore[arg-type]
            server = HttpServer(settings, harness.asgi)
            await server.start()
            stack.push_async_callback(server.close)
            return Served(harness, server, settings)

        yield start


def _is_413_json(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413, body
    assert headers["content-type"].startswith("application/json")
    assert "detail" in json.loads(body)
    assert headers.get("connection") == "close"  # the rest of the upload is not read


async def test_a_declared_oversized_login_is_refused_before_its_body_is_sent(
    serve: Callable[..., Awaitable[Served]],
) -> None:
    served = await serve()
    # 400 MB announced, nothing sent: without the limit the server would wait for it all.
    status, headers, body = await served.request(
        "POST /api/v1/auth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: 400000000\r\n\r\n"
    )
    _is_413_json(status, headers, body)


@pytest.mark.parametrize("path", ["/api/v1/auth/token", "/api/v1/devices", "/api/v1/geofences"])
async def test_a_chunked_body_is_refused_as_soon_as_it_crosses_the_limit(
    serve: Callable[..., Awaitable[Served]], path: str
) -> None:
    served = await serve()
    status, headers, body, sent = await served.upload_chunked(path)
    _is_413_json(status, headers, body)
    assert sent < GIVE_UP_AFTER  # answered while the upload was still going


async def test_socket_io_polling_posts_are_held_to_the_limit(serve: Callable[..., Awaitable[Served]]) -> None:
    served = await serve()
    status, _, body = await served.request(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert status == 200, body
    handshake = re.search(rb'"sid":"([^"]+)"', body)  # an Engine.IO session, as any browser opens one
    assert handshake is not None, body
    sid = handshake[1].decode()
    status, headers, body, sent = await served.upload_chunked(
        "/socket.io/", query=f"?EIO=4&transport=polling&sid={sid}"
    )
    _is_413_json(status, headers, body)
    assert sent < GIVE_UP_AFTER


async def test_a_body_up_to_the_limit_is_read_as_usual(serve: Callable[..., Awaitable[Served]]) -> None:
    served = await serve()
    login = json.dumps({"email": "nobody@example.com", "password": "wrong password"}).encode()
    padded = login[:-1] + b" " * (MIB - len(login)) + b"}"  # exactly 1 MiB of valid JSON
    status, _, body = await served.request(
        "POST /api/v1/auth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(padded)}\r\nConnection: close\r\n\r\n",
        padded,
    )
    assert status == 401, body


async def test_the_limit_is_a_setting(serve: Callable[..., Awaitable[Served]]) -> None:
    served = await serve(max_request_body=1000)
    body = json.dumps({"email": "nobody@example.com", "password": "x" * 1000}).encode()
    status, headers, answer = await served.request(
        "POST /api/v1/auth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n",
        body,
    )
    _is_413_json(status, headers, answer)


async def test_a_routes_own_lower_cap_still_applies(serve: Callable[..., Awaitable[Served]]) -> None:
    # Twilio's status callbacks are capped at 64 KiB by their route, far below the 1 MiB limit.
    served = await serve(twilio_account_sid="AC" + "0" * 32, twilio_auth_token="token", sms_from="+15005550006")
    served.harness.context.settings = served.server_settings  # the routes read the context's settings
    body = b"MessageSid=SM1&MessageStatus=delivered&Padding=" + b"x" * (100 * 1024)
    status, _, answer = await served.request(
        "POST /api/v1/webhooks/twilio/status HTTP/1.1\r\nHost: t\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n",
        body,
    )
    assert status == 413 and json.loads(answer) == {"detail": "request body too large"}

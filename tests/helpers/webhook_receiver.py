"""A partner's webhook receiver on 127.0.0.1 (aiohttp), scriptable: answer 503 while `down`, stall
for `hang` seconds, or redirect; it records every request it gets, with its raw body."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.helpers.process import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = orjson.loads(self.body)
        return event

    def signed_with(self, secret: str) -> bool:
        """The Solewatch-Signature header holds the HMAC a partner computes (CONTRACT §7)."""
        parts = dict(part.split("=", 1) for part in self.headers["Solewatch-Signature"].split(","))
        expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(parts["v1"], expected)


@dataclass
class Receiver:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    down: bool = False
    hang: float = 0.0
    redirect_to: str | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)  # ends every hang (at teardown)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def delivered(self) -> list[Received]:
        """What was answered 2xx (the requests that arrived while it was up)."""
        return [r for r in self.received if r.headers.get("X-Answered") == "200"]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        if self.hang:
            self.received.append(Received(request.path, headers, body))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), self.hang)
            return web.Response(status=200)
        if self.redirect_to is not None and request.path == "/hooks":
            self.received.append(Received(request.path, headers, body))
            raise web.HTTPFound(self.redirect_to)
        status = 503 if self.down else 200
        self.received.append(Received(request.path, {**headers, "X-Answered": str(status)}, body))
        return web.Response(status=status, text="down" if self.down else "ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    sink = Receiver(port=free_port())
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", sink.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", sink.port)
    await site.start()
    try:
        yield sink
    finally:
        sink.released.set()
        await runner.cleanup()

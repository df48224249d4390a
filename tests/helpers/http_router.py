"""A path-routing HTTP and WebSocket front for the distributed e2e test, in the role
compose/'s reverse proxy plays in a deployment (aiohttp, in the test's process).

Routes by path prefix to upstream groups, round robin within a group, and keeps
a Socket.IO client on the wss process that issued its session id (`sid`), as a
load balancer's sticky sessions do: Engine.IO's polling requests and its
WebSocket upgrade must reach the process holding the session.
"""

from __future__ import annotations

import asyncio
import itertools
import re

import aiohttp
from aiohttp import web

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "content-length", "host"}
_SID = re.compile(rb'"sid":"([^"]+)"')


class HttpRouter:
    def __init__(self, routes: list[tuple[str, list[str]]]):
        """`routes`: (path prefix, upstream base URLs), first match wins; put "/" last."""
        self._routes = [(prefix, itertools.cycle(bases)) for prefix, bases in routes]
        self._sessions: dict[str, str] = {}  # Engine.IO sid -> the upstream that issued it
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._client = aiohttp.ClientSession(auto_decompress=False)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    def _upstream(self, request: web.Request) -> str:
        sid = request.query.get("sid")
        if sid and sid in self._sessions:
            return self._sessions[sid]
        for prefix, bases in self._routes:
            if request.path.startswith(prefix):
                return next(bases)
        raise web.HTTPNotFound()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        base = self._upstream(request)
        url = base + request.rel_url.path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        assert self._client is not None
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._forward_websocket(request, url, headers)
        async with self._client.request(
            request.method, url, headers=headers, data=await request.read(), allow_redirects=False
        ) as upstream:
            body = await upstream.read()
            if request.path.startswith("/socket.io/") and "sid" not in request.query:
                if found := _SID.search(body):
                    self._sessions[found.group(1).decode()] = base
            response = web.Response(status=upstream.status, body=body)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers.add(name, value)
            return response

    async def _forward_websocket(self, request: web.Request, url: str, headers: dict[str, str]) -> web.StreamResponse:
        assert self._client is not None
        downstream = web.WebSocketResponse()
        await downstream.prepare(request)
        headers = {k: v for k, v in headers.items() if not k.lower().startswith("sec-websocket")}
        async with self._client.ws_connect(url.replace("http", "ws", 1), headers=headers) as upstream:
            await asyncio.gather(_pump(upstream, downstream), _pump(downstream, upstream), return_exceptions=True)
        await downstream.close()
        return downstream


async def _pump(source, target) -> None:  # type: ignore[no-untyped-def]
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await target.send_bytes(message.data)
        else:
            break
    await target.close()

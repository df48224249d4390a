"""The HTTP surface every service has: /healthz, /readyz, /metrics, served by uvicorn,
with a request-body limit in front of everything it serves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import orjson
import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.config import Settings
from shared.runtime import Runtime

# The *_created series double /metrics for no use on dashboards.
disable_created_metrics()


def health_app(title: str, runtime: Runtime) -> FastAPI:
    """A FastAPI app with the three operational endpoints; services add their routers."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        reasons = await runtime.readiness()
        not_ready = {name: why for name, why in reasons.items() if why}
        if not_ready:
            return JSONResponse({"status": "not ready", "detail": not_ready}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413 JSON, before anything reads more than that.

    It wraps the whole ASGI app a process serves (REST, auth, webhooks, Socket.IO
    polling), so no route can forget it. A Content-Length over the limit is
    answered at once, without reading a byte of the body (the server holds a
    client to the length it declared). A chunked body, which declares none, is
    read here up to the limit and handed on only if it ends within it. The
    connection is closed after a 413, so the rest of a huge upload is not even
    parsed. Routes may cap lower (webhooks). Starlette's RequestBodyLimitMiddleware
    would answer plain text outside FastAPI, and Engine.IO swallows the error it
    raises mid-read, answering 200.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes  # HttpServer.reload changes it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared, chunked = _body_framing(scope)
            if declared is not None and declared > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            if chunked:
                messages = await _read_within(receive, self.max_bytes)
                if messages is None:
                    await _too_large(send, self.max_bytes)
                    return
                receive = _replay(messages, receive)
        await self.app(scope, receive, send)


def _body_framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length, and whether the body is chunked."""
    declared, chunked = None, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            with contextlib.suppress(ValueError):  # the server refuses a malformed one itself
                declared = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return declared, chunked


async def _read_within(receive: Receive, limit: int) -> list[Message] | None:
    """The request's body messages, or None as soon as they add up to more than `limit` bytes."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":  # the client went away: let the app see it
            return messages
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body"):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = iter(messages)

    async def replaying_receive() -> Message:
        return next(pending, None) or await receive()  # then http.disconnect, when it comes

    return replaying_receive


async def _too_large(send: Send, limit: int) -> None:
    body = orjson.dumps({"detail": f"request body larger than {limit} bytes"})
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": body})


class _QuietSignalsServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the Runtime owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn as a runtime component, every request body held to `settings.max_request_body`."""

    def __init__(self, settings: Settings, app: ASGIApp, *, name: str = "http"):
        self.name = name
        self.app = app
        self._body_limit = BodyLimit(app, settings.max_request_body)
        self._config = uvicorn.Config(
            self._body_limit, host=settings.bind, port=settings.http_port, log_config=None,
            access_log=False, lifespan="off", timeout_graceful_shutdown=5,
        )
        self._server = _QuietSignalsServer(self._config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        return self._server.servers[0].sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name=self.name)
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error
                raise RuntimeError("HTTP server exited during start-up")
            await asyncio.sleep(0.01)

    async def drain(self) -> None:
        pass  # keep answering /healthz and /readyz (503 while draining) until close

    async def close(self) -> None:
        self._server.should_exit = True
        if self._task:
            await self._task

    async def reload(self, settings: Settings) -> None:
        # Port and bind changes need a restart; the body limit applies from the next request.
        self._body_limit.max_bytes = settings.max_request_body

    async def check_ready(self) -> str | None:
        return None if self._server.started else "not serving yet"

"""The HTTP surface every service has: /healthz, /readyz, /metrics, served by uvicorn,
with a request-body limit in front of everything it serves, and caps on connections
and on how long a request may take to arrive (slow clients)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, Literal, cast

import orjson
import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, disable_created_metrics, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from shared.addresses import address_scope
from shared.config import Settings
from shared.logging import get_logger
from shared.runtime import Runtime

# The *_created series double /metrics for no use on dashboards.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated

log = get_logger("solewatch.http")

connections_open = Gauge("http_connections_open", "HTTP connections open (WebSockets included)")
connections_refused = Counter(
    "http_connections_refused_total", "HTTP connections closed at once: over a cap", ["reason"]
)
requests_timed_out = Counter(
    "http_requests_timed_out_total",
    "HTTP connections closed because a request's head or body did not arrive in time",
    ["phase"],
)


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
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# Slow clients. uvicorn has no deadline for a request to arrive (its keep-alive
# timeout starts only after a response), so a client trickling headers or a
# body, or connecting and sending nothing, holds a file descriptor for ever.
# Each connection's asyncio Protocol is wrapped (_GuardedConnection): it counts
# connections per address and in all, and runs one timer per connection. The
# timer is moved at request boundaries uvicorn already finds, seen through ASGI
# (RequestDeadlines): the app is called when a request's head is complete, and
# its receive() returns the body's last part. Nothing here parses HTTP.

Phase = Literal["head", "body"]
SUMMARY_INTERVAL = 10.0  # seconds between log lines summing up refused and timed-out connections

_REQUEST_TIMEOUT = orjson.dumps({"detail": "request not received in time"})
_REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_REQUEST_TIMEOUT)
) + _REQUEST_TIMEOUT

# The connection whose protocol callback is running; the ASGI task uvicorn
# creates from it inherits the value (uvicorn's reset_contextvars stays off).
_current: ContextVar[_GuardedConnection | None] = ContextVar("solewatch_http_connection", default=None)


def _address_key(peer: Any) -> str:
    """The client address connections are counted by (shared/addresses.py)."""
    return address_scope(peer[0] if isinstance(peer, tuple) and peer else str(peer))


class ConnectionGuard:
    """One server's connection caps and request deadlines; builds the protocol of each connection."""

    def __init__(self, settings: Settings):
        self.open: Tally[str] = Tally()
        self.total = 0
        self._cut: Tally[str] = Tally()  # refused and timed-out connections since the last summary
        self._cut_from: Tally[str] = Tally()
        self._summary: asyncio.TimerHandle | None = None
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        self.max_total = settings.http_max_connections
        self.max_per_address = settings.http_max_connections_per_address
        self.timeouts: dict[Phase, float] = {"head": settings.http_header_timeout, "body": settings.http_body_timeout}

    def protocol(self, **uvicorn_args: Any) -> asyncio.Protocol:
        """uvicorn's `http=` factory: its own HTTP protocol, behind the guard."""
        return _GuardedConnection(self, AutoHTTPProtocol(**uvicorn_args))

    def admit(self, address: str) -> bool:
        reason = (
            "total"
            if self.total >= self.max_total
            else "per_address"
            if self.open[address] >= self.max_per_address
            else None
        )
        if reason:
            connections_refused.labels(reason).inc()
            self._note(f"refused_{reason}", address)
            return False
        self.open[address] += 1
        self.total += 1
        connections_open.inc()
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if not self.open[address]:
            del self.open[address]
        self.total -= 1
        connections_open.dec()

    def timed_out(self, phase: Phase, address: str) -> None:
        requests_timed_out.labels(phase).inc()
        self._note(f"{phase}_timeout", address)

    def _note(self, what: str, address: str) -> None:
        # One log line per interval, not one per connection: a flood must not flood the logs too.
        self._cut[what] += 1
        self._cut_from[address] += 1
        if self._summary is None:
            self._summary = asyncio.get_running_loop().call_later(SUMMARY_INTERVAL, self._log_summary)

    def _log_summary(self) -> None:
        log.warning(
            "http_connections_cut",
            counts=dict(self._cut),
            top_addresses=dict(self._cut_from.most_common(5)),
            open=self.total,
            seconds=SUMMARY_INTERVAL,
        )
        self._cut.clear()
        self._cut_from.clear()
        self._summary = None

    def close(self) -> None:
        if self._summary:
            self._summary.cancel()
            self._log_summary()


class _GuardedConnection(asyncio.Protocol):
    """uvicorn's protocol for one connection, behind the caps and a request deadline.

    Every callback is forwarded to the protocol uvicorn uses at the time: its HTTP
    one, then its WebSocket one after an upgrade (uvicorn hands the transport over
    with set_protocol; this takes it back and forwards to the new protocol, so the
    connection stays counted until it closes). A WebSocket is never timed.
    """

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol):
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self.admitted = False
        self.upgraded = False
        self.request = 0  # the request being received or served, numbered
        self.phase: Phase | None = None
        self.responding = False
        self.partial = False  # a request was begun and not answered: it has a client waiting
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.address = _address_key(transport.get_extra_info("peername"))
        if not self.guard.admit(self.address):
            self.transport.abort()
            return
        self.admitted = True
        self._forward(self.inner.connection_made, transport)
        self.arm("head")

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.partial = self.partial or self.phase is not None
            self._forward(self.inner.data_received, data)

    def eof_received(self) -> bool | None:
        return self._forward(self.inner.eof_received) if self.admitted else None

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self.admitted:
            self.admitted = False
            self.guard.release(self.address)
            self.inner.connection_lost(exc)

    def _forward(self, callback: Callable[..., Any], *args: Any) -> Any:
        token = _current.set(self)
        try:
            return callback(*args)
        finally:
            _current.reset(token)
            assert self.transport is not None
            if self.transport.get_protocol() is not self:  # uvicorn upgraded the connection to a WebSocket
                self.inner = cast(asyncio.Protocol, self.transport.get_protocol())  # uvicorn's WebSocket protocols
                self.transport.set_protocol(self)
                self.upgraded = True
                self.disarm()

    # The deadline, moved at request boundaries (RequestDeadlines calls these).
    def arm(self, phase: Phase) -> None:
        self.disarm()
        if not self.upgraded:
            self.phase = phase
            self._timer = asyncio.get_running_loop().call_later(self.guard.timeouts[phase], self._expired, phase)

    def disarm(self) -> None:
        if self._timer:
            self._timer.cancel()
        self._timer, self.phase = None, None

    def request_started(self, *, has_body: bool) -> int:
        self.request += 1
        self.responding, self.partial = False, True
        if has_body:
            self.arm("body")
        else:
            self.disarm()
        return self.request

    def body_received(self, request: int) -> None:
        if request == self.request and self.phase == "body":
            self.disarm()

    def response_started(self, request: int) -> None:
        if request == self.request:
            self.responding = True

    def request_done(self, request: int) -> None:
        """The response was sent (or the app gave up): the next request's head is due."""
        if request == self.request and self.phase != "head":
            self.responding = self.partial = False
            self.arm("head")

    def _expired(self, phase: Phase) -> None:
        self._timer = None
        self.guard.timed_out(phase, self.address)
        assert self.transport is not None
        # A 408 only answers a request begun and not yet answered: on an idle
        # keep-alive connection a client could take it for its next request's answer.
        if self.partial and not self.responding:
            self.transport.write(_REQUEST_TIMEOUT_RESPONSE)
        self.transport.close()


class RequestDeadlines:
    """The ASGI side of _GuardedConnection: tells it where each request is.

    Called when uvicorn has a request's whole head: the head deadline stops, and a
    body deadline starts if a body was announced, until receive() returns its last
    part. A request being served has no deadline (long-polling, streaming); the
    next head is due from the end of the response.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = _current.get()
        if connection is None or scope["type"] != "http":
            if connection is not None:
                connection.disarm()  # a WebSocket (already untimed after the upgrade)
            await self.app(scope, receive, send)
            return
        declared, chunked = _body_framing(scope)
        request = connection.request_started(has_body=chunked or bool(declared))

        async def receive_and_note() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                connection.body_received(request)
            return message

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                connection.response_started(request)
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                connection.request_done(request)

        try:
            await self.app(scope, receive_and_note, send_and_note)
        finally:
            connection.request_done(request)  # also when the app failed and uvicorn answers 500


class _QuietSignalsServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the Runtime owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn as a runtime component, every request body held to `settings.max_request_body`,
    connections capped and slow requests cut (ConnectionGuard)."""

    def __init__(self, settings: Settings, app: ASGIApp, *, name: str = "http"):
        self.name = name
        self.app = app
        self._body_limit = BodyLimit(app, settings.max_request_body)
        self._guard = ConnectionGuard(settings)
        self._config = uvicorn.Config(
            RequestDeadlines(self._body_limit),
            host=settings.bind,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=settings.http_shutdown_timeout,
            http=self._guard.protocol,  # type: ignore[arg-type]  # a factory, called as uvicorn calls a class
        )
        self._server = _QuietSignalsServer(self._config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        return int(self._server.servers[0].sockets[0].getsockname()[1])

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
        self._guard.close()

    async def reload(self, settings: Settings) -> None:
        # Port and bind changes need a restart; the body limit applies from the next request,
        # the caps from the next connection, the deadlines from the next one armed.
        self._body_limit.max_bytes = settings.max_request_body
        self._guard.configure(settings)

    async def check_ready(self) -> str | None:
        return None if self._server.started else "not serving yet"

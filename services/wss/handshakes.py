"""Bounds on half-open live sessions: Engine.IO sessions not yet authenticated.

Anyone can open an Engine.IO session (`GET /socket.io/?EIO=4&transport=polling`)
without a token; only the Socket.IO CONNECT that follows carries one. Each
such session cost the server about 13 KB (the socket, its queue and ping
task, and python-socketio's copy of the request environ, which kept the whole
ASGI request alive; GuardedServer now keeps a slim copy, about 8 KB in all),
and python-engineio forgets an abandoned one only after its first ping goes
unanswered, 45 s or more later. 22,000 abandoned handshakes held 260 MB, for
good: the freed memory never went back to the system.

So at most `limit` sessions may wait to authenticate at once (a handshake
beyond that is answered 503 with `Retry-After`), a session that has not
authenticated within `timeout` seconds is closed, and once a burst of them is
over the memory they held is handed back (`release_free_memory`).

One address may hold only `per_address` of those places: without a share per
address, one client looping handshakes kept the whole table full and every
dashboard elsewhere was refused for as long as it went on. The address is the
ASGI scope's client, which uvicorn takes from `X-Forwarded-For` when the peer
is a trusted proxy (FORWARDED_ALLOW_IPS); IPv6 counts per /64, as login
throttling does.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import gc
import math
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from shared.addresses import address_scope
from shared.logging import get_logger

log = get_logger("solewatch.wss")

half_open_sessions = Gauge(
    "wss_half_open_sessions", "Engine.IO sessions waiting for an authenticated Socket.IO CONNECT"
)
handshakes_refused = Counter(
    "wss_handshakes_refused_total",
    "Engine.IO handshakes refused: too many half-open sessions, in all or from one address",
)
handshakes_timed_out = Counter(
    "wss_handshakes_timed_out_total", "Half-open sessions closed for not authenticating in time"
)

# Memory is handed back once this many half-open sessions have ended since
# the last time: below that, what they held is noise in the process's RSS.
TRIM_AFTER_SESSIONS = 256

Send = Callable[[dict[str, Any]], Awaitable[None]]


def is_handshake(scope: dict[str, Any]) -> bool:
    """A request opening a new Engine.IO session (no `sid` yet), over polling or WebSocket."""
    if scope.get("type") not in ("http", "websocket"):
        return False
    if scope["type"] == "http" and scope.get("method") != "GET":
        return False
    query = scope.get("query_string", b"")
    return not any(part.startswith(b"sid=") for part in query.split(b"&"))


def client_address(scope: dict[str, Any]) -> str:
    """Whom a handshake counts against: the ASGI client's address (IPv6 by /64), or "" when there is none."""
    client = scope.get("client")
    return address_scope(client[0]) if client else ""


@dataclass(slots=True)
class Admission:
    """A handshake holding a place from the moment it is admitted, so concurrent ones cannot all slip past the
    check while python-engineio reads their requests; `sid` is set once its session exists."""

    address: str
    sid: str | None = None


class HalfOpenSessions:
    """Engine.IO sessions between their handshake and an authenticated Socket.IO CONNECT.

    `close` ends a session (python-engineio's socket close, which tells
    python-socketio and so `ended`); `release_after` is how long python-engineio
    still holds a closed session's memory (its first ping task keeps a
    reference until it wakes, one ping interval after the handshake).
    """

    def __init__(
        self,
        *,
        limit: int,
        per_address: int,
        timeout: float,
        close: Callable[[str], Awaitable[None]],
        release_after: float,
    ):
        self.limit = limit
        self.per_address = per_address
        self.timeout = timeout
        self._close = close
        self._release_after = release_after
        # eio sid -> deadline; insertion order is deadline order (one timeout for all).
        self._pending: dict[str, float] = {}
        self._address: dict[str, str] = {}  # eio sid -> client address
        # Places held per address and in all by handshakes still being answered (not sessions yet).
        self._held: Tally[str] = Tally()
        self._admitting = 0
        self._ended_since_trim = 0
        self._refused = 0
        self._task: asyncio.Task[None] | None = None
        self._release: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, address: str) -> Admission | None:
        """A place for a new handshake from `address`, or None when the table or that address's share is full.

        The caller must `settle` it once the handshake has been answered.
        """
        if len(self._pending) + self._admitting >= self.limit or self._held[address] >= self.per_address:
            return None
        return self.hold(address)

    def hold(self, address: str) -> Admission:
        """A place for a handshake from `address`, whether or not there is room."""
        self._admitting += 1
        self._held[address] += 1
        return Admission(address)

    def opened(self, eio_sid: str, admission: Admission) -> None:
        """The admitted handshake made session `eio_sid`: the place is the session's until it authenticates or ends."""
        admission.sid = eio_sid
        self._admitting -= 1
        self._pending[eio_sid] = time.monotonic() + self.timeout
        self._address[eio_sid] = admission.address
        half_open_sessions.set(len(self._pending))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._reap(), name="wss-half-open-reaper")

    def settle(self, admission: Admission) -> None:
        """The handshake has been answered: give its place back unless it became a session."""
        if admission.sid is None:
            self._admitting -= 1
            self._release_place(admission.address)

    def authenticated(self, eio_sid: str) -> None:
        if self._forget(eio_sid):
            half_open_sessions.set(len(self._pending))

    def ended(self, eio_sid: str) -> None:
        if self._forget(eio_sid):
            half_open_sessions.set(len(self._pending))
            self._ended_since_trim += 1

    def _forget(self, eio_sid: str) -> bool:
        if self._pending.pop(eio_sid, None) is None:
            return False
        self._release_place(self._address.pop(eio_sid))
        return True

    def _release_place(self, address: str) -> None:
        self._held[address] -= 1
        if self._held[address] <= 0:
            del self._held[address]  # a table of every address ever seen would grow for good

    async def refuse(self, scope: dict[str, Any], send: Send) -> None:
        """Answer a handshake that finds the table or its address's share full: 503 JSON with Retry-After,
        or a WebSocket refusal."""
        handshakes_refused.inc()
        if not self._refused:
            address = client_address(scope)
            log.warning(
                "half_open_sessions_full",
                limit=self.limit,
                per_address=self.per_address,
                timeout=self.timeout,
                address=address,
                held_by_address=self._held[address],
            )
        self._refused += 1
        body = orjson.dumps({"detail": "too many live connections are waiting to authenticate; retry later"})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(math.ceil(self.timeout)).encode()),
        ]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1013})  # "try again later"

    async def _reap(self) -> None:
        """Close sessions past their deadline, oldest first, until none waits."""
        closed = 0
        while self._pending:
            first_deadline = next(iter(self._pending.values()))
            await asyncio.sleep(max(0.0, first_deadline - time.monotonic()))
            now = time.monotonic()
            expired = []
            for eio_sid, deadline in self._pending.items():
                if deadline > now:
                    break
                expired.append(eio_sid)
            for eio_sid in expired:
                if not self._forget(eio_sid):
                    continue  # authenticated or gone meanwhile
                self._ended_since_trim += 1
                closed += 1
                handshakes_timed_out.inc()
                try:
                    await self._close(eio_sid)
                except Exception as exc:  # one socket failing to close must not stop the reaper
                    log.warning("half_open_close_failed", error=repr(exc))
            half_open_sessions.set(len(self._pending))
        # One line per burst, not one per session: a flood must not flood the log too.
        if closed or self._refused:
            log.info("half_open_sessions_closed", timed_out=closed, refused=self._refused)
        self._refused = 0
        if self._ended_since_trim >= TRIM_AFTER_SESSIONS:
            # python-engineio frees each session when its first ping task wakes,
            # one ping interval after the handshake: give the heap back after that,
            # once per burst (a later burst pushes it back).
            self._ended_since_trim = 0
            if self._release is not None:
                self._release.cancel()
            self._release = asyncio.get_running_loop().call_later(self._release_after, release_free_memory)


def release_free_memory() -> None:
    """Free the cyclic garbage abandoned sessions left, then return free heap pages to the system.

    Both steps are needed, measured: python-engineio builds a class for every
    request it translates, and classes are cycles, which only a full
    collection frees (an idle server may not run one for a long time); and
    glibc keeps the pages of its heaps mapped unless they sit at the top, so
    without `malloc_trim` the RSS would stay at its peak for good. One full
    collection per burst, after it, is the price (logged).
    """
    started = time.perf_counter()
    collected = gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    log.info(
        "half_open_memory_released", collected=collected, duration_ms=round((time.perf_counter() - started) * 1000, 1)
    )


@functools.cache  # find_library runs `ldconfig -p` (a blocking subprocess, ms on the event loop): once is enough
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None

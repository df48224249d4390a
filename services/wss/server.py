"""Live updates over Socket.IO: each dashboard joins its tenant's room and hears
that tenant's positions, alerts and device status as the bus delivers them.

Positions go through the location visibility (services/visibility, CONTRACT §8):
a tenant whose mode hides a worker's position hears nothing of it.

Live events are best effort (the REST API holds the truth): a failure to emit
is logged and dropped, never retried by the bus, and a message nobody is
watching costs no more than a look at the room table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import orjson
import socketio
from engineio import packet as eio_packet
from prometheus_client import Histogram
from socketio.async_pubsub_manager import AsyncPubSubManager
from socketio.exceptions import ConnectionRefusedError

from services.authn.deps import principal_from_claims
from services.authn.tokens import (
    AccessClaims,
    InvalidToken,
    revoked_by,
    session_revoked,
    user_revocation,
    verify_access_token,
)
from services.context import ServiceContext
from services.wss.backpressure import SlowReaders
from services.wss.handshakes import Admission, HalfOpenSessions, client_address, is_handshake
from shared.alerts import iso_utc
from shared.bus import Handler, Message
from shared.bus.topics import TOPIC_ALERT, TOPIC_DEVICE_STATUS, TOPIC_TELEMETRY
from shared.live_feed import PositionItem
from shared.logging import get_logger
from shared.position_view import known_battery
from shared.store.messages import telemetry_items

log = get_logger("solewatch.wss")

EMIT_TIMEOUT_S = 5.0
# How often live sockets are checked against sign-outs: a disabled user's sockets close within this
# (plus one cache read per socket), in every wss process, as each asks the shared cache.
SESSION_CHECK_S = 2.0
NAMESPACE = "/"

# How stale the map is: from the listener's receipt of a position to its hand-over to the sockets,
# the oldest position of each hand-over (one observation per send, not per position).
live_position_delay = Histogram(
    "live_position_delay_seconds",
    "From a position's arrival at the listener to its hand-over to the dashboards' sockets",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)

# The admitted handshake being answered, for `_handle_eio_connect`: python-engineio
# calls it from within `handle_request` but hands it no ASGI scope of ours.
_admission: ContextVar[Admission | None] = ContextVar("wss_admission", default=None)
# The TCP connection of the WebSocket request being answered, for the same reason.
_connection: ContextVar[asyncio.Transport | None] = ContextVar("wss_connection", default=None)


def tenant_room(tenant_id: int | str) -> str:
    return f"tenant:{tenant_id}"


def create_socketio(
    context: ServiceContext,
    *,
    client_manager: socketio.AsyncManager | None = None,
    cors_allowed_origins: str | list[str] | None = None,
) -> socketio.AsyncServer:
    """A Socket.IO server admitting clients that present a valid access token.

    `client_manager` is left to python-socketio's in-process default unless a
    distributed deployment passes a pub/sub manager; `cors_allowed_origins`
    None means same-origin only (the dashboard is served from the same port).
    """
    settings = context.settings
    sio = GuardedServer(
        max_half_open=settings.wss_max_half_open_sessions,
        max_half_open_per_address=settings.wss_max_half_open_per_address,
        handshake_timeout=settings.wss_handshake_timeout,
        ping_interval=settings.wss_ping_interval,
        send_queue_limit=settings.wss_send_queue_limit,
        slow_reader_timeout=settings.wss_slow_reader_timeout,
        async_mode="asgi",
        client_manager=client_manager,
        cors_allowed_origins=cors_allowed_origins,
        logger=False,
        engineio_logger=False,
    )

    guard = SessionGuard(context, sio)

    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise ConnectionRefusedError("unauthorized")
        try:
            claims = await verify_access_token(context.settings, context.cache, token)
            caller = principal_from_claims(claims)
        except InvalidToken:
            # Expired, forged or revoked: the client learns only this.
            raise ConnectionRefusedError("unauthorized") from None
        except Exception:  # the cache holding revocations is down: refuse rather than guess
            log.exception("socket_auth_failed")
            raise ConnectionRefusedError("temporarily unavailable") from None
        await sio.save_session(
            sid, {"tenant_id": caller.tenant_id, "user_id": caller.user_id, "session_id": caller.session_id}
        )
        await sio.enter_room(sid, tenant_room(caller.tenant_id))
        sio.half_open.authenticated(sio.manager.eio_sid_from_sid(sid, NAMESPACE))
        guard.watch(sid, claims)

    async def disconnect(sid: str, *args: Any) -> None:
        guard.forget(sid)

    # Registered by call, not as decorators: socketio is untyped, and a decorator would erase the handlers' types.
    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    return sio


class GuardedServer(socketio.AsyncServer):  # type: ignore[misc]  # socketio is untyped: its base class is Any
    """python-socketio's server with a bound on half-open sessions (services/wss/handshakes.py).

    It follows each Engine.IO session from its handshake until its Socket.IO
    CONNECT is authenticated (the `connect` handler calls
    `half_open.authenticated`) or it ends, through python-socketio's two
    Engine.IO event handlers, and refuses a handshake while too many wait,
    in all or from its address.

    It also bounds what waits for each session's client (`slow_readers`,
    services/wss/backpressure.py), and so hands it each WebSocket's connection.
    """

    def __init__(
        self,
        *,
        max_half_open: int,
        max_half_open_per_address: int,
        handshake_timeout: float,
        send_queue_limit: int = 200,
        slow_reader_timeout: float = 10.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.slow_readers = SlowReaders(self.eio.sockets, queue_limit=send_queue_limit, timeout=slow_reader_timeout)
        self.half_open = HalfOpenSessions(
            limit=max_half_open,
            per_address=max_half_open_per_address,
            timeout=handshake_timeout,
            close=self._close_half_open,
            release_after=self.eio.ping_interval + 1,
        )

    async def handle_request(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        connection = _transport_of(send) if scope.get("type") == "websocket" else None
        if not is_handshake(scope):
            upgrading = _query_sid(scope)
            if connection is not None and upgrading is not None:  # a polling session moving to WebSocket
                self.slow_readers.attach(upgrading, connection)
            return await super().handle_request(scope, receive, send)
        admission = self.half_open.admit(client_address(scope))
        if admission is None:
            return await self.half_open.refuse(scope, send)
        token = _admission.set(admission)
        connection_token = _connection.set(connection)
        try:
            return await super().handle_request(scope, receive, send)
        finally:
            _admission.reset(token)
            _connection.reset(connection_token)
            self.half_open.settle(admission)

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        admission = _admission.get()
        if admission is None:  # not through handle_request (never in service): count it, against no address
            admission = self.half_open.hold("")
        self.half_open.opened(eio_sid, admission)
        connection = _connection.get()
        if connection is not None:  # opened over WebSocket directly
            self.slow_readers.attach(eio_sid, connection)
        # python-socketio keeps each session's environ for the `connect` handler, and
        # with it the whole ASGI request that opened it (its receive and send
        # callables, uvicorn's request cycle, a body reader of a class built for that
        # request): most of a session's memory. Our handler reads none of it, and the
        # transports do not use this copy (python-engineio hands them each request's).
        kept = {key: value for key, value in environ.items() if not key.startswith(("asgi.", "wsgi."))}
        return await super()._handle_eio_connect(eio_sid, kept)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self.half_open.ended(eio_sid)
        self.slow_readers.forget(eio_sid)
        await super()._handle_eio_disconnect(eio_sid, reason)

    async def _send_eio_packet(self, eio_sid: str, eio_pkt: Any) -> None:
        # Where python-socketio's managers hand each recipient an event: a `position` emitted
        # through them (a distributed deployment's pub/sub manager) is bounded like `_send_local`'s.
        data = eio_pkt.data
        if isinstance(data, str) and data.startswith(_POSITION_EVENT):
            start = data.find(_IMEI_KEY) + len(_IMEI_KEY)
            self.slow_readers.send_position(eio_sid, data[start : data.find('"', start)], eio_pkt)
            return
        await super()._send_eio_packet(eio_sid, eio_pkt)

    async def _close_half_open(self, eio_sid: str) -> None:
        # Not `eio.disconnect`: it waits until the client has read the CLOSE
        # packet, which an abandoned polling session never does. This is what
        # python-engineio itself does to a session whose ping went unanswered.
        socket = self.eio.sockets.pop(eio_sid, None)
        if socket is not None:
            await socket.close(wait=False, abort=False, reason=self.eio.reason.SERVER_DISCONNECT)


_POSITION_EVENT = '2["position",'  # a Socket.IO EVENT packet of the default namespace, compact JSON
_IMEI_KEY = '"imei":"'


def _transport_of(send: Any) -> asyncio.Transport | None:
    """The TCP connection under an ASGI WebSocket `send`, where the server lets us reach it.

    ASGI has no way to see a connection's backlog nor to abort it, and a WebSocket
    close waits behind the bytes a stalled client does not read. uvicorn's `send`
    is a method of its WebSocket protocol, which holds the transport; any other
    server: None.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if callable(getattr(transport, "abort", None)) and callable(getattr(transport, "get_write_buffer_size", None)):
        return transport  # checked for the two methods used
    return None


def _query_sid(scope: dict[str, Any]) -> str | None:
    query: bytes = scope.get("query_string", b"")
    for part in query.split(b"&"):
        if part.startswith(b"sid="):
            return part[4:].decode("latin-1")
    return None


class SessionGuard:
    """Ends live sockets whose session was logged out, whose user was disabled or signed out
    everywhere (services/authn/tokens.py, `user-revoked:`), or whose access token expired.

    A token is checked at connect only by Socket.IO itself; without this, a
    dashboard signed out elsewhere would go on receiving its tenant's events.
    Clients reconnect with a fresh token (the dashboard refreshes it first).
    """

    def __init__(self, context: ServiceContext, sio: socketio.AsyncServer):
        self._cache = context.cache
        self._sio = sio
        self._watched: dict[str, AccessClaims] = {}  # sid -> the claims of the token it connected with
        self._task: asyncio.Task[None] | None = None

    def watch(self, sid: str, claims: AccessClaims) -> None:
        self._watched[sid] = claims
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="wss-session-guard")

    def forget(self, sid: str) -> None:
        self._watched.pop(sid, None)

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(SESSION_CHECK_S)
            now = time.time()
            marks: dict[int, dict[str, Any] | None] = {}  # one read per user and round, however many sockets
            for sid, claims in list(self._watched.items()):
                expires_at = claims.expires_at
                try:
                    if claims.user_id not in marks:
                        marks[claims.user_id] = await user_revocation(self._cache, claims.user_id)
                    ended = (
                        expires_at <= now
                        or revoked_by(marks[claims.user_id], claims.session_id, claims.session_started)
                        or await session_revoked(self._cache, claims.session_id)
                    )
                except Exception as exc:  # cache down: keep the socket, check again next round
                    log.warning("socket_session_check_failed", error=str(exc))
                    continue
                if ended:
                    self.forget(sid)
                    await self._sio.disconnect(sid)
                    log.info("socket_session_ended", sid=sid, expired=expires_at <= now)


class LiveUpdates:
    """The bus consumers feeding a Socket.IO server; they subscribe when built."""

    def __init__(self, context: ServiceContext, sio: socketio.AsyncServer, *, consumer: str = "wss"):
        self._sio = sio
        self._positions = context.positions  # the location visibility (CONTRACT §8) decides what is sent
        # Positions not yet sent, newest per device: a burst waits for the socket writes in progress
        # as one position per device, never as a queue of every frame.
        self._unsent: dict[tuple[int, int], PositionItem] = {}
        self._sender: asyncio.Task[None] | None = None
        bus = context.bus
        if context.live is not None:  # the listener is in this process: positions come the moment they arrive
            context.live.attach(self.on_live_positions, watching=self._anyone_watching)
        else:
            bus.subscribe(f"{consumer}-positions", [TOPIC_TELEMETRY], self._guarded(self.on_telemetry))
        bus.subscribe(f"{consumer}-alerts", [TOPIC_ALERT], self._guarded(self.on_alert))
        bus.subscribe(f"{consumer}-device-status", [TOPIC_DEVICE_STATUS], self._guarded(self.on_device_status))

    def _rooms(self) -> Mapping[Any, Any] | None:
        """This process's rooms and their members, or None when clients may be anywhere (a pub/sub manager)."""
        manager = self._sio.manager
        if isinstance(manager, AsyncPubSubManager):
            return None
        rooms: Mapping[Any, Any] = manager.rooms.get(NAMESPACE, {})  # socketio is untyped
        return rooms

    def _watched(self, room: str) -> bool:
        rooms = self._rooms()
        return rooms is None or bool(rooms.get(room))

    def _anyone_watching(self) -> bool:
        rooms = self._rooms()
        return rooms is None or bool(rooms)

    async def on_telemetry(self, message: Message) -> None:
        """Positions from the bus (the wss process of the distributed mode)."""
        if self._anyone_watching():  # else do not even parse the message
            await self._send_positions(list(telemetry_items(message.payload, "positions")))

    def on_live_positions(self, items: list[PositionItem]) -> None:
        """Positions from the listener in this process (shared/live_feed.py), newest per device."""
        unsent = self._unsent
        for item in items:
            key = (item["tenant_id"], item["device_id"])
            kept = unsent.get(key)
            if kept is None or (kept["ts"], kept["seq"]) <= (item["ts"], item["seq"]):
                unsent[key] = item
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_unsent(), name="wss-live-positions")

    async def _send_unsent(self) -> None:
        while self._unsent:
            items, self._unsent = list(self._unsent.values()), {}
            try:
                await asyncio.wait_for(self._send_positions(items), EMIT_TIMEOUT_S)
            except Exception as exc:
                log.warning("live_update_dropped", topic=TOPIC_TELEMETRY, positions=len(items), error=repr(exc))

    async def _send_positions(self, items: list[PositionItem]) -> None:
        rooms = self._rooms()
        watched: dict[int, bool] = {}
        shown = []
        for item in items:
            tenant_id = item["tenant_id"]
            if tenant_id not in watched:
                watched[tenant_id] = rooms is None or bool(rooms.get(tenant_room(tenant_id)))
            if watched[tenant_id]:
                shown.append(item)
        visible = await self._positions.live(shown, _live_key)
        for item in visible:
            room = tenant_room(item["tenant_id"])
            if rooms is None:
                await self._sio.emit("position", live_position(item), to=room)
            else:
                await self._send_local(rooms[room], "position", live_position(item))
        if visible:
            live_position_delay.observe(max(0.0, time.time() - min(item["received_at"] for item in visible)))

    async def _send_local(self, members: Mapping[str, str], event: str, data: dict[str, Any]) -> None:
        """Emit a position to this process's clients in a room, encoded once with orjson, in one packet.

        Positions are the one event sent thousands of times a second; python-socketio's
        emit builds packet objects, encodes with the json module and starts a task per
        recipient, which cost more than everything else on the live path. One
        Engine.IO packet serves every recipient (it caches its encoding), and a
        client that reads too slowly gets each device's newest instead of all
        (services/wss/backpressure.py).
        """
        encoded = "2" + orjson.dumps([event, data]).decode()  # a Socket.IO EVENT packet, default namespace
        message = eio_packet.Packet(eio_packet.MESSAGE, data=encoded)
        slow_readers: SlowReaders | None = getattr(self._sio, "slow_readers", None)
        for eio_sid in list(members.values()):
            if slow_readers is not None:
                slow_readers.send_position(eio_sid, data["imei"], message)
                continue
            try:  # a server of python-socketio's own (tests)
                await self._sio.eio.send_packet(eio_sid, message)
            except KeyError:
                pass  # the client left while we were sending

    async def on_alert(self, message: Message) -> None:
        payload = orjson.loads(message.payload)
        self._positions.forget_alerts(payload["tenant_id"])  # it may open or close a window of positions
        room = tenant_room(payload["tenant_id"])
        if self._watched(room):
            await self._emit(room, "alert", payload["alert"])

    async def on_device_status(self, message: Message) -> None:
        payload = orjson.loads(message.payload)
        room = tenant_room(payload["tenant_id"])
        if self._watched(room):
            last_seen = payload.get("last_seen")
            if isinstance(last_seen, int | float):
                last_seen = iso_utc(last_seen)
            status = {
                "imei": payload["imei"],
                "online": bool(payload["online"]),
                "battery": payload.get("battery"),
                "last_seen": last_seen,
            }
            await self._emit(room, "device_status", status)

    async def _emit(self, room: str, event: str, data: Any) -> None:
        """An event every member of `room` must get (never coalesced nor dropped), encoded once.

        A fleet connecting at once makes thousands of `device_status` a second: python-socketio's
        emit (a task and a JSON encoding per recipient) fell seconds behind and dropped them.
        """
        rooms = self._rooms()
        if rooms is None:  # clients may be in other processes: the pub/sub manager's way
            await self._sio.emit(event, data, to=room)
            return
        message = eio_packet.Packet(eio_packet.MESSAGE, data="2" + orjson.dumps([event, data]).decode())
        for eio_sid in list(rooms.get(room, {}).values()):
            try:
                await self._sio.eio.send_packet(eio_sid, message)
            except KeyError:
                pass  # the client left while we were sending

    @staticmethod
    def _guarded(handler: Handler) -> Handler:
        async def deliver(message: Message) -> None:
            try:
                await asyncio.wait_for(handler(message), EMIT_TIMEOUT_S)
            except Exception as exc:
                log.warning("live_update_dropped", topic=message.topic, message_id=message.message_id, error=repr(exc))

        return deliver


def _live_key(item: dict[str, Any]) -> tuple[int, int, float]:
    return item["tenant_id"], item["device_id"], item["ts"]


def live_position(item: dict[str, Any]) -> dict[str, Any]:
    """A telemetry position row as the `position` event, in the REST API's units."""
    return {
        "imei": item["imei"],
        "ts": iso_utc(item["ts"]),
        "lat": item["lat_e7"] / 1e7,
        "lon": item["lon_e7"] / 1e7,
        "speed": item["speed_cms"] / 100,
        "course": item["course_ddeg"] / 10,
        "battery": known_battery(item["battery"]),
    }


def subscribe_live_updates(context: ServiceContext, sio: socketio.AsyncServer) -> LiveUpdates:
    """Forward this process's bus messages to `sio`'s clients."""
    return LiveUpdates(context, sio)

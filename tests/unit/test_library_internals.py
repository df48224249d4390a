"""The libraries' internals the code relies on are still there, as the code uses them.

Where no public API does the job (or does it too slowly on a hot path), the code
reaches into a library; pyproject.toml pins each such library below its next
minor version, and requirements/test.lock fixes the exact version. When an
upgrade breaks one of these, this test fails naming the pin and the code that
relies on it: change the code, then raise the pin.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import inspect
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DEPENDENCIES = {
    Requirement(line).name: Requirement(line)
    for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
}


def broken(library: str, what: str, where: str) -> str:
    """The failure message: what changed, in which installed version, which code and which pin it concerns."""
    version = importlib.metadata.version(library)
    pin = DEPENDENCIES[library].specifier
    return f"{library} {version}: {what}. {where} relies on it; pyproject pins {library}{pin} for this."


@pytest.mark.parametrize("library", ["python-socketio", "python-engineio", "uvicorn", "prometheus-client"])
def test_every_library_whose_internals_are_used_is_pinned_below_a_release_and_installed_within(library: str) -> None:
    requirement = DEPENDENCIES[library]
    assert any(spec.operator == "<" for spec in requirement.specifier), f"{library} needs an upper bound in pyproject"
    installed = importlib.metadata.version(library)
    assert requirement.specifier.contains(installed), f"{library} {installed} is outside the pin {requirement}"


# -- python-socketio / python-engineio: services/wss/server.py ---------------------------------


def json_or_none(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def test_socketio_event_packet_is_what_live_positions_hand_build() -> None:
    from socketio import packet

    event, data = "position", {"imei": "356307042441013", "lat": 43.6, "battery": 87}
    ours = "2" + orjson.dumps([event, data]).decode()  # as LiveUpdates._send_local builds it
    theirs = packet.Packet(packet.EVENT, data=[event, data]).encode()
    assert theirs[:1] == ours[:1] and json_or_none(theirs[1:]) == orjson.loads(ours[1:]), broken(
        "python-socketio",
        f"an EVENT packet on the default namespace is now {theirs!r}",
        "services/wss/server.py (LiveUpdates._send_local, which encodes positions itself)",
    )


def test_socketio_server_routes_engineio_events_through_the_methods_guardedserver_overrides() -> None:
    import socketio

    where = "services/wss/server.py (GuardedServer counts half-open sessions in these overrides)"
    server = socketio.AsyncServer(async_mode="asgi")
    for event, method in (("connect", "_handle_eio_connect"), ("disconnect", "_handle_eio_disconnect")):
        handler = server.eio.handlers.get(event)
        assert getattr(handler, "__func__", None) is getattr(socketio.AsyncServer, method, None), broken(
            "python-socketio", f"Engine.IO's {event} no longer goes to AsyncServer.{method}", where
        )
    parameters = {
        "_handle_eio_connect": ["self", "eio_sid", "environ"],
        "_handle_eio_disconnect": ["self", "eio_sid", "reason"],
    }
    for method, expected in parameters.items():
        found = list(inspect.signature(getattr(socketio.AsyncServer, method)).parameters)
        assert found == expected, broken("python-socketio", f"AsyncServer.{method} now takes {found}", where)


async def test_socketio_manager_keeps_rooms_as_namespace_room_sid_to_engineio_sid() -> None:
    import socketio

    server = socketio.AsyncServer(async_mode="asgi")
    manager = server.manager
    manager.set_server(server)
    manager.initialize()
    sid = await manager.connect("eio-1", "/")
    await server.enter_room(sid, "tenant:1")
    assert manager.rooms.get("/", {}).get("tenant:1") == {sid: "eio-1"}, broken(
        "python-socketio",
        f"AsyncManager.rooms is now {manager.rooms!r}",
        "services/wss/server.py (LiveUpdates._rooms, which reads who is in a room without copying it)",
    )


async def test_engineio_server_closes_a_session_as_guardedserver_closes_a_half_open_one() -> None:
    import engineio
    from engineio.async_socket import AsyncSocket

    where = "services/wss/server.py (GuardedServer._close_half_open, and the release delay from ping_interval)"
    server = engineio.AsyncServer(async_mode="asgi")
    assert isinstance(server.sockets, dict), broken("python-engineio", "AsyncServer.sockets is no dict", where)
    assert isinstance(server.ping_interval, int | float), broken("python-engineio", "no ping_interval", where)
    assert hasattr(server.reason, "SERVER_DISCONNECT"), broken("python-engineio", "no reason.SERVER_DISCONNECT", where)
    parameters = inspect.signature(AsyncSocket.close).parameters
    assert {"wait", "abort", "reason"} <= set(parameters), broken(
        "python-engineio", f"AsyncSocket.close takes {list(parameters)}", where
    )
    assert list(inspect.signature(server.send).parameters) == ["sid", "data"], broken(
        "python-engineio", "AsyncServer.send(sid, data) changed", "services/wss/server.py (LiveUpdates._send_local)"
    )


# -- uvicorn: shared/http.py -------------------------------------------------------------------


def test_uvicorn_takes_a_protocol_factory_as_http_and_the_auto_protocol_from_where_it_was() -> None:
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    where = "shared/http.py (ConnectionGuard.protocol wraps uvicorn's own HTTP protocol)"
    assert inspect.isclass(AutoHTTPProtocol), broken("uvicorn", "AutoHTTPProtocol is no class", where)

    def factory(**kwargs: Any) -> asyncio.Protocol:
        return asyncio.Protocol()

    config = uvicorn.Config(lambda scope, receive, send: None, http=factory)  # type: ignore[arg-type]  # as shared/http.py
    config.load()
    assert config.http_protocol_class is factory, broken("uvicorn", "Config(http=callable) no longer used as is", where)
    assert not getattr(config, "reset_contextvars", False), broken(
        "uvicorn", "Config resets context variables by default", "shared/http.py (_current, read by the ASGI task)"
    )


async def test_uvicorn_server_lets_signals_be_left_alone_and_lists_its_sockets() -> None:
    import uvicorn

    assert inspect.isfunction(getattr(uvicorn.Server, "capture_signals", None)), broken(
        "uvicorn",
        "Server.capture_signals is gone (uvicorn would install its own signal handlers again)",
        "shared/http.py (_QuietSignalsServer: the Runtime owns the signals)",
    )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    class QuietServer(uvicorn.Server):  # as shared/http.py's _QuietSignalsServer
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), serving.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await serving
    assert isinstance(port, int) and port > 0, broken(
        "uvicorn", "Server.servers no longer lists the bound servers", "shared/http.py (HttpServer.port)"
    )


# -- prometheus-client: services/listener/server.py ----------------------------------------------


def test_prometheus_counter_value_is_readable_where_the_listener_reads_it() -> None:
    from prometheus_client import CollectorRegistry, Counter

    counter = Counter("internals_probe", "a probe", registry=CollectorRegistry())
    counter.inc(3)
    value = getattr(getattr(counter, "_value", None), "get", lambda: None)()
    assert value == 3, broken(
        "prometheus-client",
        "Counter._value.get() no longer reads the count",
        "services/listener/server.py (frames_stored._value.get())",
    )

"""Simulated insoles against a small fake XSole listener built on the sans-IO codec."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from services.simulator import (
    InsoleBehaviour,
    SimulatedInsole,
    SimulationStats,
    run_simulation,
    simulated_imeis,
)
from shared.protocols.xsole import (
    AckStatus,
    Activity,
    CommandCode,
    CommandResult,
    DeviceSession,
    Heartbeat,
    Login,
    LoginStatus,
    Position,
    Reply,
    encode,
    validate,
)
from shared.protocols.xsole.constants import FLAG_BUFFERED

# Fast firmware for tests: no stagger, short timeouts, no random coverage gaps.
FAST = InsoleBehaviour(
    ack_timeout=0.3,
    busy_retry=0.2,
    reconnect_backoff=(0.05, 0.2),
    refused_backoff=(5.0, 5.0),
    gap_every=None,
    startup_spread=0.0,
    drain_timeout=0.5,
    activity_interval=0.5,
    heartbeat_interval=1.0,
)


@dataclass
class Received:
    imei: str
    event: Any  # a telemetry event: Position, Activity, Heartbeat, Alarm or CommandResult
    wire: bytes  # a CRC-checked frame re-encodes to exactly the bytes that came in
    at: float
    connection: int


@dataclass
class FakeListener:
    """Accepts known tokens, ACKs every frame with status 0 unless told otherwise."""

    tokens: dict[str, bytes]
    ack_status: Callable[[Received, int], int | None] = lambda r, n: AckStatus.STORED
    on_login: Callable[[FakeListener, str, asyncio.StreamWriter, DeviceSession], None] | None = None
    close_after: int | None = None  # frames on a device's first connection, then hang up
    received: list[Received] = field(default_factory=list)
    logins: list[Login] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    commands_sent: dict[int, int] = field(default_factory=dict)  # command seq -> cmd
    connections: int = 0
    _seen: Counter[tuple[str, int]] = field(default_factory=Counter)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        session = DeviceSession()
        imei = ""
        frames_here = 0
        first_connection = False
        try:
            while data := await reader.read(65536):
                session.receive_data(data)
                while (event := session.next_event()) is not None:
                    if isinstance(event, Reply):
                        writer.write(event.data)
                        if event.close:
                            return
                        continue
                    if isinstance(event, Login):
                        self.logins.append(event)
                        if self.tokens.get(event.imei) != event.token:
                            self.refused.append(event.imei)
                            writer.write(session.reject_login(LoginStatus.BAD_TOKEN, int(time.time()), event.seq).data)
                            return
                        imei = event.imei
                        first_connection = not any(login.imei == imei for login in self.logins[:-1])
                        writer.write(session.accept_login(imei, int(time.time()), event.seq))
                        if self.on_login is not None:
                            self.on_login(self, imei, writer, session)
                        continue
                    got = Received(imei, event, encode(event), time.time(), connection)
                    self.received.append(got)
                    self._seen[(imei, event.seq)] += 1
                    status = self.ack_status(got, self._seen[(imei, event.seq)])
                    if status is not None:
                        writer.write(session.ack(event.seq, AckStatus(status)))
                    frames_here += 1
                    if first_connection and self.close_after is not None and frames_here >= self.close_after:
                        return
        finally:
            writer.close()

    def of(self, imei: str, kind: type) -> list[Received]:
        return [r for r in self.received if r.imei == imei and isinstance(r.event, kind)]


Serve = Callable[["FakeListener"], Awaitable[int]]  # starts a listener, returns its port


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(listener: FakeListener) -> int:
        server = await asyncio.start_server(listener.handle, "127.0.0.1", 0)
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def _insoles(count: int, first: int = 0) -> list[SimulatedInsole]:
    return [SimulatedInsole(imei, bytes([i % 256]) * 16) for i, imei in enumerate(simulated_imeis(count, first))]


def _tokens(insoles: list[SimulatedInsole]) -> dict[str, bytes]:
    return {i.imei: i.token for i in insoles}


async def test_insoles_log_in_and_stream_at_the_rate(serve: Serve) -> None:
    insoles = _insoles(3)
    listener = FakeListener(_tokens(insoles))
    port = await serve(listener)
    stats = await run_simulation("127.0.0.1", port, insoles, rate=10.0, duration=1.5, seed=1, behaviour=FAST)

    assert {login.imei for login in listener.logins} == {i.imei for i in insoles}
    assert all(login.firmware == 0x0102 for login in listener.logins)
    assert sorted(login.seq for login in listener.logins) == [1, 1, 1]  # each insole's first frame
    now = time.time()
    for insole in insoles:
        positions = listener.of(insole.imei, Position)
        assert 8 <= len(positions) <= 25  # ~15 at 10/s for 1.5 s
        assert listener.of(insole.imei, Activity)
        assert listener.of(insole.imei, Heartbeat)
        seqs = [r.event.seq for r in listener.received if r.imei == insole.imei]
        assert len(set(seqs)) == len(seqs)
        for r in listener.received:
            assert validate(r.event, now) is None
    assert stats.logins == 3 and stats.logins_refused == 0
    assert stats.connected == 0  # all hung up at the end
    assert stats.positions_sent == sum(len(listener.of(i.imei, Position)) for i in insoles)
    assert stats.acks_stored == stats.frames_sent == len(listener.received)
    assert stats.retransmissions == 0


async def test_unacked_frames_are_retransmitted_identically(serve: Serve) -> None:
    insoles = _insoles(2)

    # Swallow the first ACK of every third frame; reject one frame outright.
    def ack_status(got: Received, times_seen: int) -> int | None:
        seq = got.event.seq
        if seq == 7:
            return AckStatus.REJECTED
        if seq % 3 == 0 and times_seen == 1:
            return None
        if seq % 5 == 0 and times_seen == 1:
            return AckStatus.BUSY
        return AckStatus.STORED

    listener = FakeListener(_tokens(insoles), ack_status=ack_status)
    port = await serve(listener)
    stats = await run_simulation("127.0.0.1", port, insoles, rate=10.0, duration=1.5, seed=2, behaviour=FAST)

    assert stats.retransmissions > 0
    copies: dict[tuple[str, int], list[bytes]] = {}
    for r in listener.received:
        copies.setdefault((r.imei, r.event.seq), []).append(r.wire)
    resent = {k: v for k, v in copies.items() if len(v) > 1}
    assert {seq % 3 == 0 or seq % 5 == 0 for _, seq in resent} == {True}
    assert any(seq % 3 == 0 for _, seq in resent) and any(seq % 5 == 0 for _, seq in resent)
    for wires in resent.values():
        assert len(set(wires)) == 1  # same seq, same bytes
    for insole in insoles:
        assert len(copies[(insole.imei, 7)]) == 1  # rejected: dropped, never resent
    assert stats.acks_rejected == 2
    assert stats.acks_busy >= 2
    assert stats.retransmissions == sum(len(v) - 1 for v in copies.values())


async def test_wrong_token_is_a_refused_login(serve: Serve) -> None:
    good, bad = _insoles(2)
    listener = FakeListener({good.imei: good.token, bad.imei: b"\xff" * 16})
    port = await serve(listener)
    stats = await run_simulation("127.0.0.1", port, [good, bad], rate=10.0, duration=1.0, seed=3, behaviour=FAST)

    assert listener.refused == [bad.imei]  # and it backs off instead of hammering
    assert stats.logins_refused == 1
    assert stats.logins == 1
    assert not [r for r in listener.received if r.imei == bad.imei]
    assert listener.of(good.imei, Position)
    assert stats.connected == 0


async def test_commands_get_results(serve: Serve) -> None:
    insoles = _insoles(1)

    def on_login(listener: FakeListener, imei: str, writer: asyncio.StreamWriter, session: DeviceSession) -> None:
        for cmd, args in (
            (CommandCode.VIBRATE, b""),
            (CommandCode.LOCATE_NOW, b""),
            (CommandCode.REBOOT, b""),
        ):
            seq = 100 + len(listener.commands_sent)
            frame = session.command(seq, cmd, args)
            listener.commands_sent[seq] = cmd
            writer.write(frame)

    listener = FakeListener(_tokens(insoles), on_login=on_login)
    port = await serve(listener)
    stats = await run_simulation("127.0.0.1", port, insoles, rate=2.0, duration=0.8, seed=4, behaviour=FAST)

    results = {r.event.cmd_seq: r.event.status for r in listener.of(insoles[0].imei, CommandResult)}
    assert set(results) == set(listener.commands_sent)
    for seq, cmd in listener.commands_sent.items():
        assert results[seq] == (2 if cmd == CommandCode.REBOOT else 0)
    assert stats.commands_received == 3
    assert stats.commands_unsupported == 1
    assert stats.acks_stored == stats.frames_sent


async def test_reconnects_after_the_server_hangs_up(serve: Serve) -> None:
    insoles = _insoles(2)
    listener = FakeListener(_tokens(insoles), close_after=5)
    port = await serve(listener)
    stats = await run_simulation("127.0.0.1", port, insoles, rate=10.0, duration=1.5, seed=5, behaviour=FAST)

    for insole in insoles:
        logins = [login for login in listener.logins if login.imei == insole.imei]
        assert len(logins) >= 2
        assert logins[1].seq > logins[0].seq  # the seq counter runs on across connections
        mine = [r for r in listener.received if r.imei == insole.imei]
        assert len(mine) > 5
        assert [r for r in mine if r.connection != mine[0].connection]  # streaming again
    assert stats.reconnects >= 2
    assert stats.connections_lost >= 2
    assert stats.connected == 0
    # Nothing lost: frames in flight when the server hung up went again and were stored.
    assert stats.frames_unsent == 0
    assert stats.acks_stored == stats.frames_sent


async def test_backs_off_while_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        stats = await run_simulation("127.0.0.1", port, _insoles(1), rate=10.0, duration=0.8, behaviour=FAST)
    assert 2 <= stats.connect_failures <= 12  # retried with growing delays, not in a busy loop
    assert stats.logins == 0 and stats.connected == 0 and stats.frames_sent == 0
    assert stats.frames_unsent > 0  # recorded while offline, kept for later


async def test_coverage_gap_sends_a_buffered_burst(serve: Serve) -> None:
    insoles = _insoles(2)
    listener = FakeListener(_tokens(insoles))
    port = await serve(listener)
    behaviour = replace(FAST, gap_every=0.2, gap_duration=(1.6, 1.8))  # the knob that forces gaps
    stats = await run_simulation("127.0.0.1", port, insoles, rate=10.0, duration=2.8, seed=6, behaviour=behaviour)

    assert stats.coverage_gaps >= 2
    assert stats.frames_buffered > 0
    assert stats.reconnects >= 2
    for insole in insoles:
        buffered = [r for r in listener.of(insole.imei, Position) if r.event.flags & FLAG_BUFFERED]
        assert len(buffered) >= 8  # ~16 positions recorded during the gap
        for r in buffered:
            assert r.event.ts <= r.at
        assert min(r.at - r.event.ts for r in buffered) >= 0
        assert max(r.at - r.event.ts for r in buffered) >= 1.0
        # They came after a new login, on a later connection, in one burst.
        first_connection = listener.of(insole.imei, Position)[0].connection
        assert all(r.connection != first_connection for r in buffered)
        assert max(r.at for r in buffered) - min(r.at for r in buffered) < 0.5
        live = [r for r in listener.of(insole.imei, Position) if not r.event.flags & FLAG_BUFFERED]
        assert live  # before and after the gap


async def test_many_insoles_in_one_process(serve: Serve) -> None:
    insoles = _insoles(200, first=1000)
    listener = FakeListener(_tokens(insoles))
    port = await serve(listener)
    stop = asyncio.Event()
    stats = SimulationStats()
    run = asyncio.create_task(
        run_simulation("127.0.0.1", port, insoles, rate=2.0, seed=7, stats=stats, stop=stop, behaviour=FAST)
    )
    for _ in range(100):
        await asyncio.sleep(0.05)
        if stats.connected == 200:
            break
    assert stats.connected == 200  # the live counter
    await asyncio.sleep(1.0)
    stop.set()
    result = await asyncio.wait_for(run, 5)
    assert result is stats
    assert stats.connected == 0
    assert len({r.imei for r in listener.received if isinstance(r.event, Position)}) == 200
    assert stats.positions_sent >= 200

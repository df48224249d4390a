"""Simulated trackers over real TCP (localhost) against a small server speaking the codec's own session.

The server plays a listener that misbehaves on purpose: it hangs up on a device's first connection, or
goes silent on it, before answering anything. The device must log in again and send what was never
answered, so that every position it recorded reaches the store once.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import cast

import pytest

from services.simulator.device import SimulationStats
from services.simulator.tracker import TrackerBehaviour, run_tracker_simulation, simulated_tracker_imeis
from shared.protocols import registry
from shared.protocols.tracker import TrackerSession
from shared.protocols.xsole.constants import AckStatus
from shared.protocols.xsole.messages import DeviceEvent, Login, Position
from shared.protocols.xsole.session import Reply

pytestmark = pytest.mark.slow  # a couple of seconds of simulation each

FAST = TrackerBehaviour(
    window=4,
    answer_timeout=0.6,
    reconnect_backoff=(0.05, 0.1),
    refused_backoff=(0.05, 0.1),
    startup_spread=0.0,
    drain_timeout=1.0,
    login_timeout=1.0,
)


class Server:
    """Stores what a tracker sends and acknowledges it, but `first` connections of each device go wrong:
    "hang up" closes after 3 packets' worth of events without answering them; "silent" never answers."""

    def __init__(self, protocol: str, misbehave: str) -> None:
        self.protocol = protocol
        self.misbehave = misbehave
        self.stored: dict[str, list[DeviceEvent]] = defaultdict(list)
        self.connections: dict[str, int] = defaultdict(int)
        self.dropped: dict[str, list[DeviceEvent]] = defaultdict(list)  # received on a first connection, not stored

    def handler(self) -> asyncio.Protocol:
        return _Connection(self, registry.codec(self.protocol).session())


class _Connection(asyncio.Protocol):
    def __init__(self, server: Server, session: TrackerSession) -> None:
        self.server, self.session = server, session
        self.transport: asyncio.Transport | None = None
        self.imei: str | None = None
        self.first = False
        self.unacked = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        session, out, events, login = self.session, bytearray(), [], False
        session.receive_data(data)
        while (event := session.next_event()) is not None:
            if isinstance(event, Login):
                self.imei = event.imei
                self.server.connections[event.imei] += 1
                self.first = self.server.connections[event.imei] == 1
                out += session.accept_login(event.imei, int(time.time()), 0)
                login = True
            elif isinstance(event, Reply):
                out += event.data
            else:
                events.append(event)
        if self.first and events and not login:  # (H02's login is a heartbeat, stored and answered)
            self.unacked += len(events)  # received, never stored nor answered
            assert self.imei is not None
            self.server.dropped[self.imei] += events
            if self.server.misbehave == "hang up" and self.unacked >= 3:
                self.transport.close()
                return
            events = []
        if events:
            assert self.imei is not None
            self.server.stored[self.imei] += events
            out += session.acks([0] * len(events), AckStatus.STORED)
        self.transport.write(bytes(out))


@pytest.mark.parametrize("protocol", ["gt06", "h02", "teltonika"])
@pytest.mark.parametrize("misbehave", ["hang up", "silent"])
async def test_a_tracker_reconnects_and_resends_what_was_never_answered(protocol, misbehave):
    server = Server(protocol, misbehave)
    listening = await asyncio.get_running_loop().create_server(server.handler, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    imeis = simulated_tracker_imeis(protocol, 2)
    stats = SimulationStats()
    started = time.time()
    try:
        await run_tracker_simulation(
            protocol, "127.0.0.1", port, imeis, rate=10, duration=2.5, seed=7, stats=stats,
            sos_per_minute=0, behaviour=FAST,
        )  # fmt: skip
    finally:
        listening.close()
        await listening.wait_closed()
    assert stats.logins >= 4 and stats.reconnects >= 2  # each device logged in again after the trouble
    assert stats.retransmissions >= 2 * 3
    assert stats.login_timeouts == 0 and stats.logins_refused == 0
    for imei in imeis:
        assert server.connections[imei] >= 2
        fixes = [(event.ts, event.lat_e7, event.lon_e7) for event in server.stored[imei] if type(event) is Position]
        # Each once, the first connection's sent again. (A report without a GPS fix repeats the last fix,
        # within the same second at this rate: the same position twice in a row is the walk's, not a resend.)
        kept = [fix for index, fix in enumerate(fixes) if index == 0 or fix != fixes[index - 1]]
        assert len(kept) == len(set(kept)) >= 10
        assert [ts for ts, _, _ in fixes] == sorted(ts for ts, _, _ in fixes)
        assert fixes[0][0] <= started + 1
        dropped = [(event.ts, event.lat_e7, event.lon_e7) for event in server.dropped[imei] if type(event) is Position]
        assert dropped and set(dropped) <= set(fixes)  # what the first connection lost came again


async def test_a_tracker_nobody_answers_gives_up_when_unreachable():
    stats = await run_tracker_simulation(
        "gt06", "127.0.0.1", 9, simulated_tracker_imeis("gt06", 2), rate=1, duration=10,
        stats=SimulationStats(), behaviour=FAST, give_up_unreachable=True,
    )  # fmt: skip
    assert stats.connections_made == 0 and stats.connect_failures >= 2 and stats.frames_sent == 0

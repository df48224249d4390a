"""The simulated trackers' firmware against each protocol's real codec session, in memory.

A small in-memory server plays the listener's part (login verdicts, storing, acknowledging) with the
codec's own `Session`, so what is checked is what the listener would see: the device logs in as its
protocol does, what it sends decodes to the telemetry the walk recorded, what the server did not
answer is sent again on the next connection (and so reaches the store), and commands are answered.
"""

from __future__ import annotations

import random
import time

import pytest

from services.simulator.firmware import TrackerFirmware
from services.simulator.tracker import simulated_tracker_imeis
from services.simulator.walk import InsoleTelemetry
from shared.protocols import registry
from shared.protocols.tracker import TrackerSession
from shared.protocols.xsole.constants import AckStatus, AlarmKind, CommandCode, LoginStatus
from shared.protocols.xsole.messages import Alarm, CommandResult, DeviceEvent, Heartbeat, Login, Position
from shared.protocols.xsole.session import Reply

TRACKERS = ("gt06", "h02", "watch", "teltonika")


class MemoryServer:
    """One connection's server side: the codec's session, a store, acknowledgements when asked."""

    def __init__(self, protocol: str, *, known: set[str]) -> None:
        self.session: TrackerSession = registry.codec(protocol).session()
        self.known = known
        self.stored: list[DeviceEvent] = []
        self.held: list[DeviceEvent] = []  # handed out, not yet acknowledged
        self.closed = False

    def receive(self, data: bytes, *, store: bool = True) -> bytes:
        """The session's answers to `data`; with `store`, everything handed out is stored and acknowledged."""
        session, out = self.session, bytearray()
        session.receive_data(data)
        while (event := session.next_event()) is not None:
            if isinstance(event, Login):
                if event.imei in self.known:
                    out += session.accept_login(event.imei, int(time.time()), 0)
                else:
                    reply = session.reject_login(LoginStatus.UNKNOWN_DEVICE, int(time.time()), 0)
                    out += reply.data
                    self.closed = True
            elif isinstance(event, Reply):
                out += event.data
                self.closed = self.closed or event.close
            else:
                self.held.append(event)
        if store and self.held:
            self.stored += self.held
            out += session.acks([0] * len(self.held), AckStatus.STORED)
            self.held.clear()
        return bytes(out)


def walk(seed: int = 1, *, interval: float = 5.0) -> InsoleTelemetry:
    return InsoleTelemetry(
        random.Random(seed),
        time.time() - 600,
        next_seq=lambda: 0,
        position_interval=interval,
        heartbeat_interval=60.0,
        sos_per_minute=0.0,
    )


def exchange(firmware: TrackerFirmware, server: MemoryServer, data: bytes, *, store: bool = True) -> None:
    """Bytes to the server, its answers to the device, the device's answers back, until quiet."""
    while data and not server.closed:
        answer = server.receive(data, store=store)
        data = firmware.received(answer, time.time()) if answer else b""


def connect(protocol: str, imei: str, *, known: set[str] | None = None) -> tuple[TrackerFirmware, MemoryServer]:
    firmware = TrackerFirmware(registry.codec(protocol).device(imei), window=4)
    server = MemoryServer(protocol, known={imei} if known is None else known)
    exchange(firmware, server, firmware.connect(ts=int(time.time()), battery=80))
    return firmware, server


def positions(events: list[DeviceEvent]) -> list[Position]:
    return [event for event in events if type(event) is Position]


@pytest.mark.parametrize("protocol", TRACKERS)
def test_a_simulated_tracker_logs_in_and_its_walk_reaches_the_store(protocol):
    imei = simulated_tracker_imeis(protocol, 1)[0]
    firmware, server = connect(protocol, imei)
    assert firmware.online and not server.closed
    telemetry = walk()
    recorded = telemetry.advance(time.time() - 300)  # five minutes of walk
    sent = [event for event in recorded if type(event) is Position]
    firmware.record(recorded, 70)
    exchange(firmware, server, firmware.outgoing(time.time()))
    while firmware.queue or firmware.urgent:  # the window lets a few out at a time
        exchange(firmware, server, firmware.outgoing(time.time()))
    stored = positions(server.stored)
    assert len(stored) == len(sent) > 10
    # Where the worker walked, to the protocols' precision (H02's minutes have 5 decimals: ~2 cm).
    for got, want in zip(stored, sent, strict=True):
        assert got.ts == want.ts
        assert abs(got.lat_e7 - want.lat_e7) <= 200 and abs(got.lon_e7 - want.lon_e7) <= 200
    assert not firmware.in_flight and firmware.unexpected == 0


@pytest.mark.parametrize("protocol", TRACKERS)
def test_an_unknown_tracker_is_refused_and_sends_nothing(protocol):
    imei = simulated_tracker_imeis(protocol, 1)[0]
    firmware, server = connect(protocol, imei, known=set())
    assert server.closed and not firmware.online
    firmware.record(walk().advance(time.time() - 500), 70)
    assert firmware.outgoing(time.time()) == b""  # nothing leaves before a login is accepted
    assert server.stored == []


@pytest.mark.parametrize("protocol", ["gt06", "h02", "teltonika"])
def test_what_the_server_did_not_answer_is_sent_again_after_a_reconnect(protocol):
    imei = simulated_tracker_imeis(protocol, 1)[0]
    firmware, server = connect(protocol, imei)
    recorded = walk().advance(time.time() - 540)
    firmware.record(recorded, 70)
    first = firmware.outgoing(time.time())
    unanswered = list(firmware.in_flight)
    assert len(unanswered) == 4  # the window
    assert first == b"".join(packet.data for packet in unanswered)
    server.receive(first, store=False)  # received, never made durable: no answer comes
    firmware.disconnected()  # the connection drops
    assert not firmware.in_flight
    # A new connection: the same packets, the same bytes, go first; then the rest.
    server = MemoryServer(protocol, known={imei})
    answer = server.receive(firmware.connect(ts=int(time.time()), battery=80))
    again = firmware.received(answer, time.time())  # logged in: the window fills at once
    assert again == first and firmware.resent == 4
    exchange(firmware, server, again)
    while firmware.queue or firmware.urgent:
        exchange(firmware, server, firmware.outgoing(time.time()))
    want = [event.ts for event in recorded if type(event) is Position]
    assert [p.ts for p in positions(server.stored)] == want  # nothing lost, nothing twice


def test_a_watch_resends_its_unanswered_alarm_but_not_its_positions():
    imei = simulated_tracker_imeis("watch", 1)[0]
    firmware, server = connect("watch", imei)
    now = time.time()
    firmware.record([Alarm(0, int(now) - 5, int(AlarmKind.SOS), 436_160_000, 70_550_000, 60, 1)], 60)
    firmware.record(walk().advance(now - 560), 60)
    sent = firmware.outgoing(now)
    waiting = [packet.kind for packet in firmware.in_flight]
    assert waiting[0] == "alarm" and "position" not in waiting  # UD positions are never answered
    assert b"*UD," in sent
    server.receive(sent, store=False)
    firmware.disconnected()
    assert len(firmware.urgent) == 1 and firmware.urgent[0].kind == "alarm"
    assert all(packet.kind != "position" for packet in firmware.queue)
    server = MemoryServer("watch", known={imei})
    exchange(firmware, server, firmware.connect(ts=int(now), battery=60))
    exchange(firmware, server, firmware.outgoing(now))
    alarms = [event for event in server.stored if type(event) is Alarm]
    assert [a.kind for a in alarms] == [AlarmKind.SOS]
    # The AL's own fix only: the UD positions went once, on the first connection, and never again.
    assert [p.ts for p in positions(server.stored)] == [int(now) - 5]


COMMANDS = {
    "gt06": CommandCode.LOCATE_NOW,
    "h02": CommandCode.LOCATE_NOW,
    "watch": CommandCode.LOCATE_NOW,
    "teltonika": CommandCode.LOCATE_NOW,
}


@pytest.mark.parametrize("protocol", TRACKERS)
def test_a_simulated_tracker_answers_a_command_and_the_server_sees_the_result(protocol):
    imei = simulated_tracker_imeis(protocol, 1)[0]
    firmware, server = connect(protocol, imei)
    firmware.record(walk().advance(time.time() - 590), 70)  # a fix to answer with
    exchange(firmware, server, firmware.outgoing(time.time()))
    command = server.session.command(41, int(COMMANDS[protocol]), b"")
    assert command is not None
    reply = firmware.received(command, time.time())
    assert [c.command for c in firmware.commands] == [COMMANDS[protocol]]
    assert reply  # the device's answer went out at once
    exchange(firmware, server, reply)
    results = [event for event in server.stored if type(event) is CommandResult]
    assert [r.cmd_seq for r in results] == [41]
    assert not firmware.in_flight and firmware.unexpected == 0  # the answer's own reply, if any, settled it


@pytest.mark.parametrize("protocol", TRACKERS)
def test_heartbeats_keep_the_battery_and_are_not_sent_late(protocol):
    imei = simulated_tracker_imeis(protocol, 1)[0]
    firmware = TrackerFirmware(registry.codec(protocol).device(imei))
    firmware.record([Heartbeat(0, int(time.time()), 55, -70)], 55)
    assert not firmware.queue  # recorded offline: "alive" is not worth sending later
    firmware, server = connect(protocol, imei)
    firmware.record([Heartbeat(0, int(time.time()), 55, -70)], 55)
    exchange(firmware, server, firmware.outgoing(time.time()))
    beats = [event for event in server.stored if type(event) is Heartbeat]
    # GT06 says the battery in six levels (55 % is level 3, read back as 50 %); the others in percent.
    assert beats and abs(beats[-1].battery - 55) <= (10 if protocol == "gt06" else 0)


@pytest.mark.parametrize("protocol", TRACKERS)
def test_simulated_identifiers_fit_the_protocol_and_never_an_insoles(protocol):
    from services.simulator.runner import simulated_imeis

    imeis = simulated_tracker_imeis(protocol, 500)
    assert len(set(imeis)) == 500
    assert all(registry.imei_problem(protocol, imei) is None for imei in imeis)
    assert not set(imeis) & set(simulated_imeis(500))
    others = {p: set(simulated_tracker_imeis(p, 500)) for p in TRACKERS if p != protocol}
    assert all(not set(imeis) & other for other in others.values())
    with pytest.raises(ValueError):
        simulated_tracker_imeis(protocol, 2, first=999_999)


# Not Teltonika: its answer is a bare 4-byte count of records, so any 4 bytes read as one.
@pytest.mark.parametrize("protocol", ["gt06", "h02", "watch"])
def test_garbage_from_the_server_settles_nothing_and_sends_nothing(protocol):
    imei = simulated_tracker_imeis(protocol, 1)[0]
    firmware, _ = connect(protocol, imei)
    firmware.record(walk().advance(time.time() - 580), 70)
    firmware.outgoing(time.time())
    waiting, settled = list(firmware.in_flight), list(firmware.acked)
    for garbage in (b"\x00" * 3, b"\xff\xfe garbage #]", bytes(range(256))):
        assert firmware.received(garbage, time.time()) == b""
    # Nothing it could read as an answer settled a packet, so nothing is lost if the server never had them.
    assert list(firmware.in_flight) == waiting and firmware.acked == settled
    assert firmware.commands == []


@pytest.mark.parametrize("protocol", ["gt06", "h02", "teltonika"])
def test_an_answer_with_nothing_in_flight_is_counted_not_fatal(protocol):
    imei = simulated_tracker_imeis(protocol, 1)[0]
    firmware, server = connect(protocol, imei)
    firmware.record(walk().advance(time.time() - 590), 70)
    sent = firmware.outgoing(time.time())
    answer = server.receive(sent)
    firmware.received(answer, time.time())
    firmware.received(answer, time.time())  # the same answers again: nothing waits for them any more
    assert firmware.unexpected > 0 and firmware.online


@pytest.mark.parametrize("protocol", TRACKERS)
def test_the_workers_sos_reaches_the_server_as_an_sos_ahead_of_the_positions(protocol):
    imei = simulated_tracker_imeis(protocol, 1)[0]
    firmware, server = connect(protocol, imei)
    telemetry = walk()
    firmware.record(telemetry.advance(time.time() - 500), 70)  # a backlog of positions
    firmware.record(telemetry.sos_now(time.time() - 400), 70)  # then the worker presses SOS
    exchange(firmware, server, firmware.outgoing(time.time()))
    alarms = [event for event in server.stored if type(event) is Alarm]
    assert [alarm.kind for alarm in alarms] == [AlarmKind.SOS]
    # Ahead of a backlog of 20-odd positions: in the first packet after the login (with its own fix).
    assert len(positions(server.stored)) > 20 and server.stored.index(alarms[0]) <= 3
    assert alarms[0].ts == int(telemetry.t)


def test_an_alarm_the_protocol_cannot_say_is_counted_not_sent():
    firmware = TrackerFirmware(registry.codec("teltonika").device(simulated_tracker_imeis("teltonika", 1)[0]))
    firmware.record([Alarm(0, int(time.time()), int(AlarmKind.LOW_BATTERY), 0, 0, 12, 0)], 12)
    assert firmware.unsayable == 1 and not firmware.urgent

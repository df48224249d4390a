"""A simulated tracker's firmware, sans-IO: what it sends, what it waits for, what it sends again.

The protocols' `Device` classes (shared/protocols/<name>/device.py) build each packet as a real
device does; this keeps the state around them that a real device keeps too:

- a queue of packets recorded and not yet sent (alarms and command answers ahead of positions);
- the packets sent and not yet answered, oldest first: the server answers them in the order they
  were sent (shared/protocols/tracker.py), so each answer settles the oldest one;
- a connection's start: the login packet (GT06, Teltonika), or for the protocols whose every packet
  names the device (H02, watch) a heartbeat, whose answer says the server took the device in;
- when the connection drops, every packet not answered goes back to the queue's front, in order,
  and is sent again on the next connection: the device cannot know whether the server kept it.

Packets the protocol never answers (a watch's UD position) are sent and forgotten: nothing would
ever settle them. No sockets, no clock: services/simulator/tracker.py drives it over TCP, and the
unit tests feed it a codec's real `Session` in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from shared.protocols.tracker import FromServer, TrackerDevice
from shared.protocols.xsole.constants import AlarmKind
from shared.protocols.xsole.messages import Activity, Alarm, DeviceEvent, Heartbeat, Position


@dataclass(slots=True)
class Packet:
    data: bytes
    kind: str  # "position", "alarm", "heartbeat", "answer" (to a command), "hello" (H02's, the watch's first heartbeat)
    answered: bool  # whether the server answers it (so it waits in `in_flight` for that answer)
    sent_at: float = 0.0  # when last sent (in the driver's clock)
    sent_before: bool = False  # sent on an earlier connection: the next sending is a resend
    alarm_kind: int | None = None


class TrackerFirmware:
    """One device's packets over successive connections (see the module's docstring)."""

    def __init__(self, device: TrackerDevice, *, window: int = 8, buffer_limit: int = 4000) -> None:
        if window < 1:
            raise ValueError("the window is at least one packet")
        self.device = device
        self.protocol = device.protocol
        self.window = window
        self.buffer_limit = buffer_limit
        self.urgent: deque[Packet] = deque()  # alarms and answers to commands
        self.queue: deque[Packet] = deque()  # positions and heartbeats
        self.in_flight: deque[Packet] = deque()  # sent, awaiting the server's answer, oldest first
        self.connected = False
        self.online = False  # the server took the device in on this connection
        self.refused = False  # the server said no to the login (Teltonika says so; the others hang up)
        self.hello_pending = False  # the login (or first heartbeat) awaits its answer
        self.dropped = 0  # positions dropped from a full queue while offline
        self.resent = 0
        self.unexpected = 0  # answers with nothing in flight
        self.acked: list[Packet] = []  # settled since the driver last looked (it counts and clears them)
        self.commands: list[FromServer] = []  # received since the driver last looked
        self.unsayable = 0  # alarms this protocol cannot say (Teltonika has no low-battery alarm)

    # -- what the device records ------------------------------------------------------

    def record(self, events: Iterable[DeviceEvent], battery: int) -> None:
        """Telemetry recorded by the walk (services/simulator/walk.py), as this protocol's packets."""
        device = self.device
        for event in events:
            if type(event) is Position:
                data = device.position(
                    ts=event.ts,
                    lat_e7=event.lat_e7,
                    lon_e7=event.lon_e7,
                    speed_cms=event.speed_cms,
                    course_ddeg=event.course_ddeg,
                    battery=event.battery,
                )
                self._queue(Packet(data, "position", device.acks_positions))
            elif type(event) is Heartbeat:
                data = device.heartbeat(ts=event.ts, battery=event.battery)
                self._queue(Packet(data, "heartbeat", device.acks_heartbeats))
            elif type(event) is Alarm:
                try:
                    data = device.alarm(
                        event.kind, ts=event.ts, lat_e7=event.lat_e7, lon_e7=event.lon_e7, battery=event.battery
                    )
                except ValueError:  # the protocol has no such alarm
                    self.unsayable += 1
                    continue
                self.urgent.append(Packet(data, "alarm", device.acks_alarms, alarm_kind=event.kind))
            elif type(event) is not Activity:  # steps and gait: no tracker protocol carries them
                raise TypeError(f"a tracker does not record {type(event).__name__}")

    def _queue(self, packet: Packet) -> None:
        if packet.kind == "heartbeat" and not self.online:
            return  # "alive now" is not worth sending late
        self.queue.append(packet)
        while len(self.queue) > self.buffer_limit:
            self.queue.popleft()
            self.dropped += 1

    # -- a connection's life ----------------------------------------------------------

    def connect(self, *, ts: int, battery: int) -> bytes:
        """The first bytes on a new connection: the login, or a heartbeat for H02 and the watch."""
        self.connected, self.online, self.refused = True, False, False
        hello = self.device.login()
        if not hello:
            hello = self.device.heartbeat(ts=ts, battery=battery)
            self.in_flight.appendleft(Packet(hello, "hello", True))
        self.hello_pending = True
        return hello

    def disconnected(self) -> None:
        """The connection is gone: what was not answered goes back to the front, to be sent again."""
        unanswered = [packet for packet in self.in_flight if packet.kind != "hello"]
        self.in_flight.clear()
        for packet in reversed(unanswered):
            packet.sent_before = True
            (self.urgent if packet.kind in ("alarm", "answer") else self.queue).appendleft(packet)
        self.connected = self.online = self.hello_pending = False

    def outgoing(self, now: float) -> bytes:
        """What to send now: queued packets, as far as the window of unanswered ones allows."""
        if not self.online:
            return b""
        out = bytearray()
        while len(self.in_flight) < self.window and (self.urgent or self.queue):
            packet = (self.urgent or self.queue).popleft()
            packet.sent_at = now
            if packet.sent_before:
                self.resent += 1
            if packet.answered:
                self.in_flight.append(packet)
            else:
                self.acked.append(packet)  # sent is all it will ever be
            out += packet.data
        return bytes(out)

    def oldest_unanswered(self) -> float | None:
        """When the oldest packet still waiting for its answer was sent (None: none waits)."""
        return self.in_flight[0].sent_at if self.in_flight else None

    def received(self, data: bytes, now: float) -> bytes:
        """The server's bytes: answers settle packets, commands are answered. Returns what to send."""
        for said in self.device.feed(data):
            if said.kind == "login":
                self.hello_pending = False
                self.online = said.accepted
                self.refused = not said.accepted
            elif said.kind == "ack":
                if not self.in_flight:
                    self.unexpected += 1
                    continue
                settled = self.in_flight.popleft()
                if settled.kind == "hello":
                    self.hello_pending = False
                    self.online = True
                else:
                    self.acked.append(settled)
            elif said.kind == "command":
                self.commands.append(said)
                answer = self.device.answer(said)
                if answer:
                    self.urgent.append(Packet(answer, "answer", self.device.answer_is_answered(said)))
        return self.outgoing(now)


def is_sos(packet: Packet) -> bool:
    return packet.kind == "alarm" and packet.alarm_kind == AlarmKind.SOS

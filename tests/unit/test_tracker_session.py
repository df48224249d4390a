"""The bookkeeping every tracker session shares (shared/protocols/tracker.py), driven through the real
H02 codec: an alarm a status word repeats in every packet (until R7 clears it) is one alarm, not one
per packet; a packet's answer never overtakes the answers of the packets before it."""

from __future__ import annotations

from shared.protocols.h02 import Device, Session
from shared.protocols.xsole.constants import AckStatus, AlarmKind
from shared.protocols.xsole.messages import Alarm, Login

NOW = 1765000000
IMEI = "4209951530"
FIX = {"lat_e7": 525_000_000, "lon_e7": 134_000_000, "battery": 80}


class Link:
    """Drives a session as the listener does; `acks` says how the store answers each event."""

    def __init__(self) -> None:
        self.session = Session(clock=lambda: NOW)
        self.device = Device(IMEI, clock=lambda: NOW)
        self.alarms: list[Alarm] = []

    def send(self, packet: bytes, status: AckStatus = AckStatus.STORED) -> bytes:
        self.session.receive_data(packet)
        handed, out = [], b""
        while (event := self.session.next_event()) is not None:
            if isinstance(event, Login):
                out += self.session.accept_login(event.imei, NOW, 0)
                continue
            handed.append(event)
            if isinstance(event, Alarm):
                self.alarms.append(event)
        return out + self.session.acks([e.seq for e in handed], status)  # type: ignore[union-attr]  # events


def sos(link: Link, at: int) -> bytes:
    return link.device.alarm(AlarmKind.SOS, ts=at, **FIX)


def test_an_sos_held_over_many_packets_is_one_alarm_and_a_new_press_is_another() -> None:
    link = Link()
    for second in range(5):  # the device repeats the latched SOS bit with each new report
        assert link.send(sos(link, NOW - 60 + second))  # and every packet is still answered
    assert [a.kind for a in link.alarms] == [AlarmKind.SOS]
    link.send(link.device.position(ts=NOW - 50, speed_cms=0, course_ddeg=0, **FIX))  # cleared (R7)
    link.send(sos(link, NOW - 40))
    assert [a.kind for a in link.alarms] == [AlarmKind.SOS, AlarmKind.SOS]


def test_an_sos_the_store_did_not_take_is_raised_again_with_the_next_packet() -> None:
    link = Link()
    assert link.send(sos(link, NOW - 60), AckStatus.BUSY) == b""  # not stored: no answer, so it is resent
    link.send(sos(link, NOW - 59))
    assert len(link.alarms) == 2 and link.alarms[1].ts == NOW - 59
    link.send(sos(link, NOW - 58))
    assert len(link.alarms) == 2


def test_a_packet_with_nothing_to_store_is_answered_after_the_packets_before_it() -> None:
    link = Link()
    link.send(link.device.heartbeat(ts=NOW - 30, battery=80))  # logged in
    session = link.session
    session.receive_data(link.device.position(ts=NOW - 20, speed_cms=0, course_ddeg=0, **FIX))
    waiting = [session.next_event(), session.next_event()]  # the position, then nothing yet
    assert waiting[1] is None
    session.receive_data(b"*HQ," + IMEI.encode() + b",V0#")  # nothing to store, answered with its head
    assert session.next_event() is None  # and not before the position ahead of it is
    answers = session.acks([waiting[0].seq], AckStatus.STORED)  # type: ignore[union-attr]  # a Position
    assert answers.startswith(b"*HQ," + IMEI.encode() + b",V4,V1,")
    assert answers.endswith(b"#*HQ," + IMEI.encode() + b",V0#")

"""GT06: chunking never changes what comes out, garbage and truncation never crash, and the
device side's every packet makes a round trip through the server side."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.protocols.gt06 import Device, Session
from shared.protocols.gt06.framing import encode_packet
from shared.protocols.tracker import FromServer
from shared.protocols.xsole.constants import AckStatus, AlarmKind, CommandCode, CommandStatus
from shared.protocols.xsole.messages import Alarm, CommandResult, DeviceEvent, Heartbeat, Login, Position
from shared.protocols.xsole.session import Reply, SessionState
from tests.unit.test_gt06_codec import (
    ALARM_0X16_REMOVED,
    ALARM_0X16_SOS,
    ALARM_0X16_SOS_STATUS_BITS,
    ALARM_0X26_TAMPER,
    ALARM_0XA4_TAMPER,
    ALARM_0XA5_TAMPER,
    ANSWER_FLAG_ZERO,
    BAD_CRC_LOCATION,
    DOC_LOGIN,
    HEARTBEAT,
    LOCATION_0X12,
    LOCATION_0X22,
    NOW,
    TIME_REQUEST,
    WHERE_ANSWER,
    WIFI_NO_CRC,
    h,
)

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
VECTORS = [
    LOCATION_0X12,
    LOCATION_0X22,
    ALARM_0X26_TAMPER,
    ALARM_0X16_SOS,
    ALARM_0X16_SOS_STATUS_BITS,
    ALARM_0X16_REMOVED,
    ALARM_0XA4_TAMPER,
    ALARM_0XA5_TAMPER,
    HEARTBEAT,
    TIME_REQUEST,
    ANSWER_FLAG_ZERO,
    BAD_CRC_LOCATION,
    WIFI_NO_CRC,
    WHERE_ANSWER,
]
STREAM = h(DOC_LOGIN) + b"".join(h(v) for v in VECTORS)


def run(chunks: list[bytes]) -> tuple[list[DeviceEvent], bytes, Session]:
    """What a session gives for these reads: its events and every byte it sends, acknowledging all."""
    session = Session(clock=lambda: NOW)
    events: list[DeviceEvent] = []
    sent = bytearray()
    for chunk in chunks:
        session.receive_data(chunk)
        while (event := session.next_event()) is not None:
            if isinstance(event, Login):
                events.append(event)
                sent += session.accept_login(event.imei, NOW, 0)
            elif isinstance(event, Reply):
                sent += event.data
            else:
                events.append(event)
                sent += session.acks([event.seq], AckStatus.STORED)
    return events, bytes(sent), session


WHOLE_EVENTS, WHOLE_SENT, _ = run([STREAM])


def test_the_whole_stream_decodes_every_vector() -> None:
    kinds = [type(e).__name__ for e in WHOLE_EVENTS]
    assert kinds.count("Position") == 8 and kinds.count("Alarm") == 6 and kinds.count("Heartbeat") == 1


@pytest.mark.parametrize("vector", VECTORS)
def test_every_vector_split_at_every_byte_gives_the_same(vector: str) -> None:
    stream = h(DOC_LOGIN) + h(vector)
    whole = run([stream])
    for cut in range(1, len(stream)):
        events, sent, _ = run([stream[:cut], stream[cut:]])
        assert (events, sent) == whole[:2], f"cut at {cut}"


def test_the_stream_byte_by_byte_gives_the_same() -> None:
    events, sent, _ = run([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert (events, sent) == (WHOLE_EVENTS, WHOLE_SENT)


@PROPERTY_SETTINGS
@given(st.lists(st.integers(1, len(STREAM) - 1), max_size=30, unique=True))
def test_any_chunking_gives_the_same(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    events, sent, _ = run(chunks)
    assert (events, sent) == (WHOLE_EVENTS, WHOLE_SENT)


@PROPERTY_SETTINGS
@given(st.integers(0, len(STREAM)))
def test_a_truncated_stream_gives_a_prefix_of_the_events(cut: int) -> None:
    events, _, _ = run([STREAM[:cut]])
    assert events == WHOLE_EVENTS[: len(events)]


@PROPERTY_SETTINGS
@given(st.binary(max_size=600), st.binary(max_size=600))
def test_garbage_never_crashes(before: bytes, after: bytes) -> None:
    events, _, session = run([before, h(DOC_LOGIN), after])
    assert session.state in (SessionState.AWAITING_LOGIN, SessionState.ONLINE, SessionState.CLOSED)
    assert all(isinstance(e, (Login, Position, Alarm, Heartbeat, CommandResult)) for e in events)


# Garbage with no long start (0x79 0x79 announcing a length past the limit closes, as it should).
_garbage = st.binary(max_size=400).map(lambda b: b.replace(b"\x79", b"\x7a"))


@PROPERTY_SETTINGS
@given(_garbage, st.sampled_from([LOCATION_0X12, ALARM_0X16_SOS, HEARTBEAT]))
def test_after_garbage_the_next_good_packet_is_decoded(garbage: bytes, vector: str) -> None:
    # A false start in the garbage may claim the bytes of the packet after it: the device resends
    # what was not answered, and the resend is read.
    _, _, session = run([h(DOC_LOGIN)])
    expected, _, _ = run([h(DOC_LOGIN) + h(vector)])
    events: list[DeviceEvent] = []
    session.receive_data(garbage + h(vector) + h(vector) + bytes(300))
    while (event := session.next_event()) is not None:
        if not isinstance(event, Reply):
            events.append(event)
    if session.state is SessionState.ONLINE:
        assert expected[1] in events


@PROPERTY_SETTINGS
@given(st.integers(0, len(h(ALARM_0X26_TAMPER)) * 8 - 1))
def test_a_flipped_bit_is_never_a_different_alarm(bit: int) -> None:
    packet = bytearray(h(ALARM_0X26_TAMPER))
    packet[bit // 8] ^= 1 << (bit % 8)
    good, _, _ = run([h(DOC_LOGIN) + h(ALARM_0X26_TAMPER)])
    events, _, _ = run([h(DOC_LOGIN) + bytes(packet)])
    # A corrupted packet is dropped (bad CRC, or not framed): never read as something else.
    assert events == good[:1]


_KNOWN_TYPES = [0x01, 0x10, 0x11, 0x12, 0x13, 0x15, 0x16, 0x19, 0x21, 0x22, 0x26, 0x27, 0x8A, 0xA0, 0xA4, 0xA5, 0x94]


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(st.sampled_from(_KNOWN_TYPES), st.binary(max_size=80), st.integers(0, 0xFFFF), st.booleans()),
        max_size=12,
    )
)
def test_well_framed_packets_of_any_content_never_crash(packets: list[tuple[int, bytes, int, bool]]) -> None:
    # CRC-valid packets of the known types with random content: every decoder meets short and odd fields.
    stream = h(DOC_LOGIN) + b"".join(
        encode_packet(kind, content, serial, long=long) for kind, content, serial, long in packets
    )
    events, _, session = run([stream])
    assert isinstance(events[0], Login)
    assert session.state in (SessionState.ONLINE, SessionState.CLOSED)
    assert all(isinstance(e, (Position, Alarm, Heartbeat, CommandResult)) for e in events[1:])


# -- the device side's round trip ------------------------------------------------------------


class RoundTrip:
    def __init__(self) -> None:
        self.device = Device("356307042441013")
        self.session = Session(clock=lambda: NOW)

    def send(self, data: bytes) -> tuple[list[DeviceEvent], list[FromServer]]:
        self.session.receive_data(data)
        events: list[DeviceEvent] = []
        answer = bytearray()
        while (event := self.session.next_event()) is not None:
            if isinstance(event, Login):
                events.append(event)
                answer += self.session.accept_login(event.imei, int(time.time()), 0)
            elif isinstance(event, Reply):
                answer += event.data
            else:
                events.append(event)
                answer += self.session.acks([event.seq], AckStatus.STORED)
        # One byte at a time: the device side reassembles any chunking.
        heard = [item for i in range(len(answer)) for item in self.device.feed(bytes(answer[i : i + 1]))]
        return events, heard


def logged_in_round_trip() -> RoundTrip:
    trip = RoundTrip()
    events, heard = trip.send(trip.device.login())
    assert events == [Login(0, "356307042441013", 0, b"")]
    assert [item.kind for item in heard] == ["login"] and heard[0].accepted
    return trip


def test_round_trip_position() -> None:
    trip = logged_in_round_trip()
    data = trip.device.position(
        ts=NOW, lat_e7=436_163_000, lon_e7=70_553_000, speed_cms=140, course_ddeg=2705, battery=87
    )
    [position], heard = trip.send(data)
    assert isinstance(position, Position)
    assert (position.ts, position.course_ddeg, position.speed_cms) == (NOW, 2700, 139)  # 5 km/h, 270 degrees
    assert abs(position.lat_e7 - 436_163_000) <= 3 and abs(position.lon_e7 - 70_553_000) <= 3
    assert [item.kind for item in heard] == ["ack"] and heard[0].data[3] == 0x22


@pytest.mark.parametrize("kind", [AlarmKind.SOS, AlarmKind.FALL, AlarmKind.LOW_BATTERY, AlarmKind.TAMPER])
def test_round_trip_alarm(kind: AlarmKind) -> None:
    trip = logged_in_round_trip()
    events, heard = trip.send(trip.device.alarm(kind, ts=NOW, lat_e7=-1_000_000, lon_e7=2_000_000, battery=50))
    [alarm] = [e for e in events if isinstance(e, Alarm)]
    assert (alarm.kind, alarm.ts, alarm.battery) == (kind, NOW, 50)
    assert abs(alarm.lat_e7 + 1_000_000) <= 3 and abs(alarm.lon_e7 - 2_000_000) <= 3
    assert [item.kind for item in heard] == ["ack"]


def test_the_device_refuses_an_alarm_gt06_cannot_say() -> None:
    with pytest.raises(ValueError, match="NO_MOTION"):
        Device("356307042441013").alarm(AlarmKind.NO_MOTION, ts=NOW, lat_e7=0, lon_e7=0, battery=50)


def test_round_trip_heartbeat() -> None:
    trip = logged_in_round_trip()
    [heartbeat], heard = trip.send(trip.device.heartbeat(ts=NOW, battery=100))
    assert isinstance(heartbeat, Heartbeat) and (heartbeat.ts, heartbeat.battery) == (NOW, 100)
    assert [item.kind for item in heard] == ["ack"]


@pytest.mark.parametrize("code", [CommandCode.LOCATE_NOW, CommandCode.REBOOT])
def test_round_trip_command_and_its_answer(code: CommandCode) -> None:
    trip = logged_in_round_trip()
    command = trip.session.command(0x0102, code)
    assert command is not None
    [item] = [x for i in range(len(command)) for x in trip.device.feed(command[i : i + 1])]
    assert (item.kind, item.command, item.data) == ("command", code, command)
    events, heard = trip.send(trip.device.answer(item))
    assert events == [CommandResult(events[0].seq, 0x0102, CommandStatus.DONE)]
    assert [x.kind for x in heard] == ["ack"]


def test_the_device_side_skips_garbage_and_bad_crcs() -> None:
    device = Device("356307042441013")
    reply = encode_packet(0x01, b"", 1)  # a login answer
    corrupted = bytearray(reply)
    corrupted[-3] ^= 0xFF  # its CRC
    assert device.feed(b"noise" + bytes(corrupted) + reply) == [FromServer("login", reply)]

"""Hypothesis on the watch codec: chunking never changes what comes out, garbage and truncation never
crash and the next good packet is read, and what a watch's side writes decodes to what it was given."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.protocols.watch import Device
from shared.protocols.watch.framing import _read_header_slowly, read_header
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID, AlarmKind
from shared.protocols.xsole.messages import Alarm, Heartbeat, Position
from shared.protocols.xsole.session import SessionEnd
from tests.unit.test_watch_codec import (
    DOC_AL,
    DOC_LK,
    NOW,
    T_AL_INDEXED,
    T_FOUR,
    T_UD_BRACKETS,
    T_VOICE,
    VECTORS,
    Run,
    drive,
    fields_of,
    new_session,
    outcome,
)

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
IMEI = "8800000015"
# Pieces a hostile or broken peer might send: header fragments, brackets, escapes, stray separators.
TOKENS = st.sampled_from(
    [b"[", b"]", b"*", b",", b"}", b"\x7d\x01", b"3G", b"[3G*", b"[3G*8800000015*", b"0002*", b"FFFF*", b"LK", b"AL,"]
)
garbage = st.lists(st.one_of(st.binary(max_size=20), TOKENS), max_size=30).map(b"".join)


def as_device(packet: bytes) -> bytes:
    """A vector's packets as one watch's: its own id would close the connection as a second login."""
    return re.sub(rb"\[(\w\w)\*\d+\*", rb"[\1*8800000015*", packet)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@PROPERTY_SETTINGS
@given(st.lists(st.sampled_from([*VECTORS[:14], T_VOICE]), min_size=1, max_size=6), st.lists(st.integers(0, 10**6)))
def test_any_chunking_of_a_stream_gives_the_same_events(packets: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(as_device(packet) for packet in packets)
    whole = outcome(drive(new_session(), stream))
    session = new_session()
    run = Run()
    for piece in chunks(stream, cuts):
        drive(session, piece, run)
    assert outcome(run) == whole


@PROPERTY_SETTINGS
@given(garbage)
def test_garbage_never_crashes_and_the_next_good_packet_is_read(noise: bytes) -> None:
    session = new_session()
    run = drive(session, DOC_LK)
    run = drive(session, noise + DOC_AL, run)
    if run.end is not None:
        # Only the framing limits (a garbage header declaring a huge length, ten bad packets in a row)
        # or a garbage packet naming another device close the connection.
        assert run.end in (SessionEnd.BAD_FRAMING, SessionEnd.BAD_FRAMES, SessionEnd.MALFORMED_LOGIN)
        return
    # A `[` can continue no header, so whatever the garbage left open, the AL's header ends it.
    kinds = [event.kind for event in run.events if isinstance(event, Alarm)]
    assert kinds[-1:] == [AlarmKind.TAMPER]
    assert run.sent.endswith(b"[3G*8800000015*0002*AL]")


@PROPERTY_SETTINGS
@given(
    st.sampled_from(VECTORS),
    st.lists(st.tuples(st.integers(0, 10**6), st.one_of(st.binary(min_size=1, max_size=3), TOKENS)), max_size=4),
)
def test_a_damaged_packet_never_crashes_and_the_next_good_packet_is_read(
    packet: bytes, damage: list[tuple[int, bytes]]
) -> None:
    damaged = bytearray(as_device(packet))
    for at, replacement in damage:
        at %= len(damaged)
        damaged[at : at + len(replacement)] = replacement
    session = new_session()
    run = drive(session, DOC_LK + bytes(damaged) + DOC_AL)
    if run.end is not None:
        assert run.end in (SessionEnd.BAD_FRAMING, SessionEnd.BAD_FRAMES, SessionEnd.MALFORMED_LOGIN)
        return
    assert [event.kind for event in run.events if isinstance(event, Alarm)][-1:] == [AlarmKind.TAMPER]
    assert run.sent.endswith(b"[3G*8800000015*0002*AL]")


@PROPERTY_SETTINGS
@given(st.sampled_from([DOC_AL, T_FOUR, T_UD_BRACKETS, T_VOICE, T_AL_INDEXED]), st.integers(1, 10**6))
def test_a_packet_cut_anywhere_never_costs_the_next_one(packet: bytes, cut: int) -> None:
    packet = as_device(packet)
    truncated = packet[: 1 + cut % (len(packet) - 1)]
    session = new_session()
    run = drive(session, DOC_LK + truncated + DOC_AL)
    assert run.end is None
    assert [event.kind for event in run.events if isinstance(event, Alarm)][-1:] == [AlarmKind.TAMPER]
    assert run.sent.endswith(b"[3G*8800000015*0002*AL]")
    assert session.bad_frames <= 1


lat_e7 = st.integers(-900_000_000, 900_000_000)
lon_e7 = st.integers(-1_800_000_000, 1_800_000_000)
ts = st.integers(1_600_000_000, NOW)
speed = st.integers(0, 10_000)
course = st.integers(0, 3599)
battery = st.integers(0, 100)


@PROPERTY_SETTINGS
@given(ts, lat_e7, lon_e7, speed, course, battery, st.booleans())
def test_a_watchs_position_decodes_to_what_it_was_given(
    when: int, lat: int, lon: int, cms: int, ddeg: int, percent: int, buffered: bool
) -> None:
    device = Device(IMEI)
    packet = device.position(
        ts=when, lat_e7=lat, lon_e7=lon, speed_cms=cms, course_ddeg=ddeg, battery=percent, buffered=buffered
    )
    (position,) = drive(new_session(), packet).events
    assert isinstance(position, Position)
    flags = FLAG_FIX_VALID | (FLAG_BUFFERED if buffered else 0)
    assert fields_of(position) == (when, lat, lon, 0, cms, ddeg, 8, 0, percent, flags)


@PROPERTY_SETTINGS
@given(st.sampled_from([AlarmKind.SOS, AlarmKind.FALL, AlarmKind.LOW_BATTERY, AlarmKind.TAMPER]), ts, lat_e7, lon_e7)
def test_a_watchs_alarm_decodes_to_what_it_was_given(kind: AlarmKind, when: int, lat: int, lon: int) -> None:
    device = Device(IMEI)
    run = drive(new_session(), device.alarm(kind, ts=when, lat_e7=lat, lon_e7=lon, battery=7))
    alarms = [fields_of(event) for event in run.events if isinstance(event, Alarm)]
    assert alarms == [(when, kind, lat, lon, 7, FLAG_FIX_VALID)]
    assert device.feed(bytes(run.sent))[0].kind == "ack"


@PROPERTY_SETTINGS
@given(battery)
def test_a_watchs_heartbeat_decodes_to_its_battery(percent: int) -> None:
    (heartbeat,) = drive(new_session(), Device(IMEI).heartbeat(ts=0, battery=percent)).events
    assert isinstance(heartbeat, Heartbeat) and heartbeat.battery == percent


@PROPERTY_SETTINGS
@given(st.lists(st.sampled_from([b"0", b"7", b"A", b"f", b"z", b"*", b"[", b"]", b"3G", b"0002*"]), max_size=20))
def test_the_fast_header_read_agrees_with_the_field_by_field_one(pieces: list[bytes]) -> None:
    candidate = b"[" + b"".join(pieces)
    for end in range(1, len(candidate) + 1):
        assert read_header(candidate[:end], 0) == _read_header_slowly(candidate[:end], 0)

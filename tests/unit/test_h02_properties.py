"""Hypothesis over the H02 codec: chunking never changes what comes out, garbage and truncation
never crash and the next good packet is decoded. Vectors as in test_h02_codec.py ([T]: Traccar's
H02ProtocolDecoderTest.testDecode, [TF]: H02FrameDecoderTest)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.protocols.h02 import Device
from shared.protocols.xsole.constants import AlarmKind, CommandCode
from shared.protocols.xsole.messages import Position
from tests.unit.test_h02_codec import NOW, TRACCAR_STREAM, Run

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TEXT_FRAME = TRACCAR_STREAM[0]  # [T] a V1 frame
BINARY_FRAME = TRACCAR_STREAM[6]  # [T] a 32-byte binary frame
_device = Device("4210051415", clock=lambda: NOW)
DEVICE_STREAM = (
    _device.position(ts=1765000000, lat_e7=515000000, lon_e7=-1000000, speed_cms=500, course_ddeg=900, battery=50)
    + _device.heartbeat(ts=1765000000, battery=40)
    + _device.alarm(AlarmKind.SOS, ts=1765000010, lat_e7=515000000, lon_e7=-1000000, battery=40)
    + b"*HQ,4210051415,LINK,112137,20,8,67,0,0,081116,FFFFFBFF#"
)


def _outcome(r: Run) -> tuple[list[object], bytes, int, int, bool]:
    return r.events, r.replies, r.session.bad_frames, r.session.rejected, r.closed is not None


def _feed_in_chunks(data: bytes, cuts: list[int]) -> Run:
    r = Run()
    last = 0
    for cut in sorted(set(cuts)):
        r.feed(data[last:cut])
        last = cut
    return r.feed(data[last:])


@PROPERTY_SETTINGS
@given(st.sampled_from([DEVICE_STREAM, TEXT_FRAME * 3, BINARY_FRAME * 3, *TRACCAR_STREAM]), st.data())
def test_any_chunking_gives_the_same_outcome(stream: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert _outcome(_feed_in_chunks(stream, cuts)) == _outcome(Run().feed(stream))


@PROPERTY_SETTINGS
@given(st.binary(max_size=1500), st.lists(st.integers(0, 1500), max_size=10))
def test_garbage_never_raises(garbage: bytes, cuts: list[int]) -> None:
    r = _feed_in_chunks(garbage, [c for c in cuts if c <= len(garbage)])
    assert r.closed is None or r.closed.close  # the session only ever ends by closing, never by an exception


@PROPERTY_SETTINGS
@given(st.binary(max_size=300).map(lambda b: b.replace(b"*", b"").replace(b"$", b"")), st.sampled_from(
    [TEXT_FRAME, BINARY_FRAME, DEVICE_STREAM]))  # fmt: skip
def test_the_packet_after_garbage_is_decoded(garbage: bytes, good: bytes) -> None:
    r = Run().feed(garbage + good)
    assert _outcome(r) == _outcome(Run().feed(good))
    # CR and LF between packets are separators, not garbage; inside a run of garbage they are skipped with it
    assert len(garbage.replace(b"\r", b"").replace(b"\n", b"")) <= r.session.skipped_bytes <= len(garbage)


def _same_device_position(frame: bytes) -> bytes:
    """A V1 from the device that sent `frame` (a packet naming another device would close the link)."""
    device_id = frame[1:6].hex() if frame[:1] == b"$" else frame.split(b",")[1].decode()
    device = Device(device_id, clock=lambda: NOW)
    return device.position(ts=1765000000, lat_e7=1, lon_e7=2, speed_cms=3, course_ddeg=4, battery=5)


@PROPERTY_SETTINGS
@given(st.sampled_from([TEXT_FRAME, BINARY_FRAME, *TRACCAR_STREAM[1:5]]), st.data())
def test_a_truncated_packet_then_a_good_text_one(frame: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(1, len(frame) - 2))
    good = _same_device_position(frame)
    r = Run().feed(frame[:cut] + good)
    assert r.events[-1:] == Run().feed(good).events  # the good packet comes through, last
    assert r.closed is None


@PROPERTY_SETTINGS
@given(st.binary(min_size=1, max_size=200), st.sampled_from(TRACCAR_STREAM))
def test_mangled_packets_never_raise(noise: bytes, frame: bytes) -> None:
    mangled = bytearray(frame)
    for i, b in enumerate(noise[: len(mangled)]):
        if b & 1:
            mangled[(i * 7) % len(mangled)] = b
    r = Run().feed(bytes(mangled) + TEXT_FRAME)
    assert r.closed is None or r.closed.close


@PROPERTY_SETTINGS
@given(
    st.integers(1_600_000_000, 1_765_000_000),
    st.integers(-900_000_000, 900_000_000),
    st.integers(-1_800_000_000, 1_800_000_000),
    st.integers(0, 20_000),
    st.integers(0, 3599),
)
def test_device_positions_round_trip(ts: int, lat_e7: int, lon_e7: int, speed_cms: int, course_ddeg: int) -> None:
    device = Device("123456789012345", clock=lambda: NOW)
    packet = device.position(
        ts=ts, lat_e7=lat_e7, lon_e7=lon_e7, speed_cms=speed_cms, course_ddeg=course_ddeg, battery=9
    )
    r = Run().feed(packet)
    (position,) = r.events
    assert isinstance(position, Position)
    assert position.ts == ts and position.course_ddeg == course_ddeg
    assert abs(position.lat_e7 - lat_e7) <= 2 and abs(position.lon_e7 - lon_e7) <= 2  # 1e-5 minute ≈ 1.7e-7 degree
    assert abs(position.speed_cms - speed_cms) <= 1  # 0.01 knot ≈ 0.5 cm/s
    heard = [f.kind for f in device.feed(r.replies)]
    assert heard == ["ack"]


@PROPERTY_SETTINGS
@given(st.lists(st.integers(0, 200), max_size=12))
def test_device_reads_the_server_in_any_chunking(cuts: list[int]) -> None:
    server = (
        b"*HQ,4210051415,V4,V1,20251206054640#\r\n*HQ,4210051415,HTBT#*HQ,4210051415,D1,054640,30,1#"
        b"*HQ,999,V4,V1,x#*HQ,4210051415,R7,054640#"
    )
    device = Device("4210051415")
    heard = []
    last = 0
    for cut in sorted(c for c in set(cuts) if c <= len(server)):
        heard += device.feed(server[last:cut])
        last = cut
    heard += device.feed(server[last:])
    assert [(f.kind, f.command) for f in heard] == [
        ("ack", None),
        ("ack", None),
        ("command", CommandCode.LOCATE_NOW),
        ("command", CommandCode.ALARM_ACKNOWLEDGED),
    ]

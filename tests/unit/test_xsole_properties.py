"""Hypothesis: chunking never changes what comes out, garbage never crashes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.protocols.xsole import (
    Ack,
    Activity,
    Alarm,
    BadCrc,
    Command,
    CommandResult,
    DeviceSession,
    FrameBuffer,
    Heartbeat,
    Login,
    LoginAck,
    LoginStatus,
    Position,
    RawFrame,
    Reply,
    SessionState,
    XSoleProtocolError,
    decode,
    encode,
)

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
seqs = u16
battery = st.integers(0, 100)
lat_e7 = st.integers(-900_000_000, 900_000_000)
lon_e7 = st.integers(-1_800_000_000, 1_800_000_000)
flags = st.integers(0, 3)

logins = st.builds(
    Login, seqs, st.text("0123456789", min_size=15, max_size=15), u16, st.binary(min_size=16, max_size=16)
)
heartbeats = st.builds(Heartbeat, seqs, u32, battery, st.integers(-128, 127))
positions = st.builds(
    Position, seqs, u32, lat_e7, lon_e7, st.integers(-32768, 32767), u16, st.integers(0, 3599), u8, u8, battery, flags
)
activities = st.builds(Activity, seqs, u32, u16, st.integers(0, 5), u8, battery, flags)
alarms = st.builds(Alarm, seqs, u32, st.integers(1, 6), lat_e7, lon_e7, battery, flags)
command_results = st.builds(CommandResult, seqs, u16, st.integers(0, 2))
login_acks = st.builds(LoginAck, seqs, st.integers(0, 3), u32)
acks = st.builds(Ack, seqs, st.integers(0, 4))
commands = st.builds(Command, seqs, st.integers(1, 5), st.binary(max_size=32))

events = st.one_of(logins, heartbeats, positions, activities, alarms, command_results, login_acks, acks, commands)


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut at arbitrary points (possibly into single bytes, possibly not at all)."""
    if draw(st.booleans()) and len(data) < 400:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=30))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def drain(chunks: Sequence[bytes]) -> tuple[list[RawFrame | BadCrc], bool, int]:
    """Frames out of `chunks`, whether framing failed, and how many bytes were skipped.

    Only XSoleProtocolError may escape next_frame: anything else fails the test.
    """
    buffer = FrameBuffer()
    frames: list[RawFrame | BadCrc] = []
    try:
        for chunk in chunks:
            buffer.feed(chunk)
            while (frame := buffer.next_frame()) is not None:
                frames.append(frame)
    except XSoleProtocolError:
        return frames, True, buffer.skipped_bytes
    return frames, False, buffer.skipped_bytes


# (a) valid frames: any chunking yields exactly the frames that were sent.


@PROPERTY_SETTINGS
@given(st.data(), st.lists(events, min_size=1, max_size=12))
def test_any_chunking_of_valid_frames_gives_the_same_events(data: st.DataObject, sent: list) -> None:
    stream = b"".join(encode(event) for event in sent)
    chunks = data.draw(chunkings(stream))

    whole = drain([stream])
    chunked = drain(chunks)

    assert chunked == whole
    frames, failed, skipped = whole
    assert not failed and skipped == 0
    assert [decode(f) for f in frames] == sent  # type: ignore[arg-type]


# (b) garbage, alone or mixed with frames: same output whatever the chunking,
# only ever XSoleProtocolError from framing, never anything from decode.


def damaged(frame: bytes, index: int, xor: int) -> bytes:
    out = bytearray(frame)
    out[index % len(out)] ^= xor
    return bytes(out)


magic_noise = st.sampled_from([b"X", b"S", b"XS", b"XX", b"XSX", b"XS\x01", b"XS\x01\x02\x00"])
garbage = st.one_of(st.binary(min_size=1, max_size=40), magic_noise)
broken_frames = st.builds(damaged, events.map(encode), st.integers(0, 2000), st.integers(1, 255))
truncated_frames = st.builds(lambda frame, cut: frame[: cut % len(frame)], events.map(encode), st.integers(0, 2000))
pieces = st.one_of(garbage, events.map(encode), broken_frames, truncated_frames)


@PROPERTY_SETTINGS
@given(st.data(), st.lists(pieces, max_size=15))
def test_garbage_in_any_chunking_only_raises_the_protocol_error(data: st.DataObject, parts: list[bytes]) -> None:
    stream = b"".join(parts)
    chunks = data.draw(chunkings(stream))

    whole = drain([stream])
    chunked = drain(chunks)

    assert chunked == whole
    for frame in whole[0]:
        if isinstance(frame, RawFrame):
            decode(frame)


@PROPERTY_SETTINGS
@given(st.binary(max_size=600))
def test_pure_random_bytes_only_raise_the_protocol_error(stream: bytes) -> None:
    frames, _, skipped = drain([stream])

    assert skipped <= len(stream)
    for frame in frames:
        if isinstance(frame, RawFrame):
            decode(frame)


@PROPERTY_SETTINGS
@given(u8, seqs, st.binary(max_size=64))
def test_decode_never_raises(frame_type: int, seq: int, payload: bytes) -> None:
    event = decode(RawFrame(frame_type, seq, payload))

    assert event.seq == seq


@PROPERTY_SETTINGS
@given(st.data(), st.lists(st.one_of(pieces, logins.map(encode)), max_size=15), st.booleans())
def test_device_session_never_raises(data: st.DataObject, parts: list[bytes], accept: bool) -> None:
    stream = b"".join(parts)
    session = DeviceSession()
    for chunk in data.draw(chunkings(stream)):
        session.receive_data(chunk)
        while True:
            event = session.next_event()
            if session.state is SessionState.LOGIN_PENDING:
                assert isinstance(event, Login)
                if accept:
                    session.accept_login(event.imei, 0, event.seq)
                else:
                    assert session.reject_login(LoginStatus.BAD_TOKEN, 0, event.seq).close
                continue
            if event is None:
                break
            if isinstance(event, Reply) and event.close:
                assert session.state is SessionState.CLOSED
    assert session.state is not SessionState.LOGIN_PENDING

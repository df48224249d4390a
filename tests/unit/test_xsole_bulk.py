"""The hot path (`bulk.take_telemetry`) gives what the general path gives.

A session fed the same bytes, in the same chunks, must accept the same rows
and answer the same refusals whether the listener drains it with `next_event`
alone or takes runs with `take_telemetry` first, whatever the bytes hold:
valid frames, values out of range, alarms, bad CRCs, unknown types, garbage,
frames cut short or too long, or a window that stops the run early.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.protocols.xsole import (
    Activity,
    Alarm,
    CommandResult,
    DeviceSession,
    FrameType,
    Heartbeat,
    Position,
    Reply,
    SessionState,
    encode,
    encode_frame,
    validate,
)
from shared.protocols.xsole.bulk import HOT_TYPES, NO_TS, TelemetryRun, read_run, run_of_one
from shared.protocols.xsole.framing import crc16

NOW = 1_800_000_000.0
KEY = 7  # a device id: the rows below are what a store makes of a run
u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
# Mostly in range, sometimes not, so that validation stops some runs.
ts = st.one_of(st.integers(int(NOW) - 10_000, int(NOW)), u32)
battery = st.one_of(st.integers(0, 100), u8)
lat = st.one_of(st.integers(-900_000_000, 900_000_000), st.integers(-(2**31), 2**31 - 1))
lon = st.one_of(st.integers(-1_800_000_000, 1_800_000_000), st.integers(-(2**31), 2**31 - 1))

telemetry = st.one_of(
    st.builds(
        Position,
        u16,
        ts,
        lat,
        lon,
        st.integers(-32768, 32767),
        u16,
        st.one_of(st.integers(0, 3599), u16),
        u8,
        u8,
        battery,
        st.integers(0, 3),
    ),
    st.builds(Heartbeat, u16, ts, battery, st.integers(-128, 127)),
    st.builds(Activity, u16, ts, u16, st.integers(0, 7), u8, battery, st.integers(0, 3)),
    st.builds(Alarm, u16, ts, st.integers(0, 8), lat, lon, battery, st.integers(0, 3)),
    st.builds(CommandResult, u16, u16, st.integers(0, 2)),
)


@st.composite
def odd_frames(draw: st.DrawFn) -> bytes:
    """Frames the hot path must leave to the general path."""
    kind = draw(st.sampled_from(["bad_crc", "short", "unknown", "long_tail", "garbage", "bad_version"]))
    frame = encode(draw(telemetry))
    if kind == "bad_crc":
        return frame[:-1] + bytes([frame[-1] ^ 0x01])
    if kind == "short":  # a hot type whose payload is cut short, CRC valid
        return encode_frame(draw(st.sampled_from(HOT_TYPES)), draw(u16), draw(st.binary(max_size=2)))
    if kind == "unknown":
        return encode_frame(draw(st.sampled_from([0x03, 0x20, 0x80, 0x81])), draw(u16), draw(st.binary(max_size=8)))
    if kind == "long_tail":  # newer firmware appending fields: accepted by both paths
        return encode_frame(frame[3], int.from_bytes(frame[6:8], "big"), frame[8:-2] + draw(st.binary(max_size=6)))
    if kind == "bad_version":  # version 2, with a CRC that matches it
        body = bytes([2]) + frame[3:-2]
        return b"XS" + body + crc16(body).to_bytes(2, "big")
    return draw(st.binary(min_size=1, max_size=12))


streams = st.lists(st.one_of(telemetry.map(encode), telemetry.map(encode), odd_frames()), max_size=25).map(b"".join)


@st.composite
def chunked(draw: st.DrawFn) -> list[bytes]:
    data = draw(streams)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=6))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def online() -> DeviceSession:
    session = DeviceSession()
    session.state = SessionState.ONLINE
    session.imei = "356307042441013"
    return session


TYPE_OF = {
    Position: FrameType.POSITION,
    Heartbeat: FrameType.HEARTBEAT,
    Activity: FrameType.ACTIVITY,
    CommandResult: FrameType.COMMAND_RESULT,
}


def run(chunks: list[bytes], *, hot: bool, window: int) -> tuple[dict[int, list[Any]], list[Any], SessionState, int]:
    """What a listener would do: the rows accepted per frame type (in order), the
    other answers (refusals, replies, alarms, in order), and the session's state."""
    session = online()
    rows_by_type: dict[int, list[tuple[Any, ...]]] = {t: [] for t in HOT_TYPES}
    answers: list[Any] = []
    runs: list[bytes] = []
    hot_seqs: list[int] = []
    for chunk in chunks:
        session.receive_data(chunk)
        while True:
            if hot and (run := session.take_telemetry(NOW, window)) is not None:
                runs.append(run.frames)
                hot_seqs += run.seqs
                add_rows(rows_by_type, run)
                continue
            event = session.next_event()
            if event is None:
                break
            if isinstance(event, Reply):
                answers.append(("reply", event.data, event.close))
                continue
            reason = validate(event, NOW)  # type: ignore[arg-type]
            if reason is not None:
                answers.append(("rejected", event.seq, reason))  # type: ignore[union-attr]
            elif type(event) is Alarm:
                answers.append(("alarm", event))
            else:
                rows_by_type[TYPE_OF[type(event)]].append((KEY, *event, NOW))  # type: ignore[misc]
    # The runs hold exactly the frames the hot path took, as received.
    assert [int.from_bytes(raw[6:8], "big") for run in runs for raw in _frames_of(run)] == hot_seqs
    return rows_by_type, answers, session.state, session.bad_frames


def add_rows(rows_by_type: dict[int, list[tuple[Any, ...]]], run: TelemetryRun) -> None:
    """A run's frames as rows `(KEY, *fields, NOW)`, in the order received."""
    frame_types = [raw[3] for raw in _frames_of(run.frames)]
    fields = {frame_type: iter(decoded) for frame_type, decoded in run.fields_by_type.items()}
    for frame_type in frame_types:
        rows_by_type[frame_type].append((KEY, *next(fields[frame_type]), NOW))
    assert all(next(rest, None) is None for rest in fields.values())  # no frame decoded twice or unseen


def _frames_of(run: bytes) -> list[bytes]:
    frames, pos = [], 0
    while pos < len(run):
        end = pos + 8 + int.from_bytes(run[pos + 4 : pos + 6], "big")
        frames.append(run[pos:end])
        pos = end
    return frames


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(chunked(), st.integers(1, 10))
def test_hot_path_accepts_and_refuses_exactly_what_the_general_path_does(chunks: list[bytes], window: int) -> None:
    assert run(chunks, hot=True, window=window) == run(chunks, hot=False, window=window)


def test_a_run_of_positions_becomes_storage_rows_in_one_call() -> None:
    session = online()
    positions = [
        Position(seq, int(NOW) - 60 + seq, 436163000, 70553000, 12, 150, 900, 9, 11, 80, 1) for seq in range(8)
    ]
    session.receive_data(b"".join(map(encode, positions)))
    rows_by_type: dict[int, list[tuple[Any, ...]]] = {t: [] for t in HOT_TYPES}

    run = session.take_telemetry(NOW, 64)

    assert run is not None
    assert (run.first_ts, run.last_ts, run.frames) == (
        int(NOW) - 60,
        int(NOW) - 53,
        b"".join(map(encode, positions)),
    )  # the bytes as received
    add_rows(rows_by_type, run)
    seqs = run.seqs

    assert rows_by_type[FrameType.POSITION] == [(KEY, *p, NOW) for p in positions]
    assert seqs == list(range(8))
    assert session.next_event() is None


def test_the_window_limits_a_run_and_the_rest_stays_buffered() -> None:
    session = online()
    session.receive_data(b"".join(encode(Heartbeat(seq, int(NOW), 80, -60)) for seq in range(5)))
    first, second = (session.take_telemetry(NOW, 3) for _ in range(2))
    assert first is not None and second is not None
    seqs = first.seqs + second.seqs
    assert (len(first.frames), len(second.frames)) == (
        3 * len(encode(Heartbeat(0, 0, 0, 0))),
        2 * len(encode(Heartbeat(0, 0, 0, 0))),
    )
    assert seqs == [0, 1, 2, 3, 4]
    assert session.take_telemetry(NOW, 3) is None


def test_nothing_is_taken_before_login() -> None:
    session = DeviceSession()
    session.receive_data(encode(Heartbeat(1, int(NOW), 80, -60)))
    assert session.take_telemetry(NOW, 64) is None
    reply = session.next_event()
    assert isinstance(reply, Reply) and reply.close  # frame before login: ACK 3, closed


def test_an_oversized_length_is_left_for_the_general_path_to_close() -> None:
    session = online()
    # A POSITION whose length field says 1025 (the limit is 1024), whole and with a matching CRC.
    body = b"\x01\x10" + struct.pack(">HH", 1025, 1) + encode(Position(1, int(NOW), 0, 0, 0, 0, 0, 0, 0, 50, 1))[8:-2]
    body += bytes(4 + 1025 - len(body))  # version, type, length, then seq and payload: 1025 bytes
    session.receive_data(b"XS" + body + crc16(body).to_bytes(2, "big"))
    assert session.take_telemetry(NOW, 64) is None
    reply = session.next_event()
    assert isinstance(reply, Reply) and reply.close


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(chunked(), st.integers(1, 10))
def test_a_run_read_again_from_its_bytes_is_the_run_taken(chunks: list[bytes], window: int) -> None:
    session = online()
    for chunk in chunks:
        session.receive_data(chunk)
        while True:
            run = session.take_telemetry(NOW, window)
            if run is not None:
                assert read_run(run.frames) == run
            elif session.next_event() is None:
                break


@pytest.mark.parametrize(
    "frames",
    [
        b"",
        encode(Heartbeat(1, int(NOW), 80, -60))[:-1],  # cut short
        encode(Heartbeat(1, int(NOW), 80, -60))[:-1] + b"\x00",  # bad CRC
        encode(Alarm(1, int(NOW), 1, 0, 0, 50, 1)),  # not a type the hot path takes
        encode(Heartbeat(1, int(NOW), 80, -60)) + b"XS",  # trailing bytes
    ],
    ids=["empty", "cut-short", "bad-crc", "alarm", "trailing-bytes"],
)
def test_anything_but_whole_telemetry_frames_is_no_run(frames: bytes) -> None:
    with pytest.raises(ValueError):
        read_run(frames)


def test_a_frame_from_the_general_path_is_a_run_of_one() -> None:
    heartbeat, result = Heartbeat(4, int(NOW), 80, -60), CommandResult(5, 41, 0)

    assert run_of_one(heartbeat) == TelemetryRun(
        [4], {FrameType.HEARTBEAT: [tuple(heartbeat)]}, int(NOW), int(NOW), encode(heartbeat)
    )
    assert (run_of_one(result).first_ts, run_of_one(result).last_ts) == NO_TS  # no device time
    assert read_run(run_of_one(result).frames) == run_of_one(result)

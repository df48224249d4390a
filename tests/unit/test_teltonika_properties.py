"""Teltonika framing under Hypothesis: chunking never changes what comes out; garbage, truncation, bad
checksums and oversized lengths never crash, and the next good packet comes through. Vectors: see
test_teltonika_codec.py (Teltonika's wiki and Traccar's TeltonikaProtocolDecoderTest)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.protocols.teltonika import Session
from shared.protocols.teltonika.framing import CODEC_8, MAX_DATA_LENGTH
from shared.protocols.xsole.constants import CommandCode, CommandStatus
from shared.protocols.xsole.messages import CommandResult, Login
from shared.protocols.xsole.session import Reply, SessionEnd, SessionState
from tests.unit.test_teltonika_codec import (
    AVL_VECTORS,
    IMEI,
    TRACCAR_CODEC8,
    WIKI_GETIO_ANSWER,
    WIKI_IMEI,
    decode_whole,
    drain,
    logged_in,
)

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STREAM = b"".join(AVL_VECTORS)
EXPECTED = [event for vector in AVL_VECTORS for event in decode_whole(vector)[0]]


def feed_in_pieces(data: bytes, cuts: list[int]) -> tuple[list[Any], Session]:
    session = logged_in()
    events: list[Any] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        session.receive_data(data[last:cut])
        events += drain(session)
        last = cut
    return events, session


def test_every_vector_split_at_every_byte_gives_the_same_events() -> None:
    for vector in AVL_VECTORS:
        whole = decode_whole(vector)[0]
        for cut in range(1, len(vector)):
            assert feed_in_pieces(vector, [cut])[0] == whole, (vector[:12].hex(), cut)


def test_every_vector_fed_byte_by_byte_gives_the_same_events() -> None:
    events, session = feed_in_pieces(STREAM, list(range(1, len(STREAM))))
    assert events == EXPECTED
    assert (session.bad_frames, session.skipped_bytes) == (0, 0)


@PROPERTY_SETTINGS
@given(st.lists(st.integers(1, len(STREAM) - 1), max_size=40))
def test_any_chunking_of_a_stream_gives_the_same_events(cuts: list[int]) -> None:
    assert feed_in_pieces(STREAM, cuts)[0] == EXPECTED


@PROPERTY_SETTINGS
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=10))
def test_garbage_never_crashes_the_session(garbage: bytes, cuts: list[int]) -> None:
    events, session = feed_in_pieces(garbage, [c for c in cuts if c < len(garbage)])
    for event in events:
        if isinstance(event, Reply):
            ends = (SessionEnd.BAD_FRAMING, SessionEnd.BAD_FRAMES, SessionEnd.MALFORMED_LOGIN)
            assert event.close and event.end in ends
    assert session.state in (SessionState.ONLINE, SessionState.CLOSED)


# Bytes that can never start a packet: no zero byte (every header starts with one), no 0xFF (the ping).
no_start = st.binary(min_size=1, max_size=500).map(lambda b: bytes(x for x in b if x not in (0, 0xFF)) or b"\x01")


@PROPERTY_SETTINGS
@given(no_start)
def test_garbage_is_skipped_and_counted_and_the_next_packet_comes_through(garbage: bytes) -> None:
    events, session = feed_in_pieces(garbage + TRACCAR_CODEC8, [len(garbage)])
    assert events == decode_whole(TRACCAR_CODEC8)[0]
    assert session.skipped_bytes == len(garbage)


@PROPERTY_SETTINGS
@given(st.integers(9, len(TRACCAR_CODEC8) - 1), st.integers(1, 255))
def test_a_changed_byte_is_a_bad_checksum_and_the_next_packet_comes_through(at: int, flip: int) -> None:
    damaged = bytearray(TRACCAR_CODEC8)
    damaged[at] ^= flip  # anywhere past the header: in the data or the CRC field
    events, session = feed_in_pieces(bytes(damaged) + TRACCAR_CODEC8, [])
    assert events == decode_whole(TRACCAR_CODEC8)[0]
    assert session.bad_frames == 1


@PROPERTY_SETTINGS
@given(st.sampled_from(AVL_VECTORS), st.data())
def test_a_packet_cut_short_gives_nothing_and_never_crashes(vector: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(1, len(vector) - 1))
    events, session = feed_in_pieces(vector[:cut], [])
    assert events == []
    assert session.state is SessionState.ONLINE


@PROPERTY_SETTINGS
@given(st.integers(MAX_DATA_LENGTH + 1, 2**32 - 1))
def test_a_declared_length_past_the_limit_closes_at_once(length: int) -> None:
    header = bytes(4) + length.to_bytes(4, "big") + bytes((CODEC_8,))
    events, session = feed_in_pieces(header, [])
    assert len(events) == 1 and isinstance(events[0], Reply) and events[0].end is SessionEnd.BAD_FRAMING
    assert session.state is SessionState.CLOSED


def test_the_imei_and_a_command_answer_split_at_every_byte_give_the_same_events() -> None:
    for cut in range(1, len(WIKI_IMEI)):
        session = Session()
        session.receive_data(WIKI_IMEI[:cut])
        assert session.next_event() is None
        session.receive_data(WIKI_IMEI[cut:])
        assert session.next_event() == Login(0, IMEI, 0, b"")
    for cut in range(1, len(WIKI_GETIO_ANSWER)):
        session = logged_in()
        assert session.command(5, CommandCode.LOCATE_NOW) is not None
        session.receive_data(WIKI_GETIO_ANSWER[:cut])
        events = drain(session)
        session.receive_data(WIKI_GETIO_ANSWER[cut:])
        events += drain(session)
        assert events == [CommandResult(5, 5, CommandStatus.DONE)], cut


@PROPERTY_SETTINGS
@given(st.binary(max_size=1000))
def test_garbage_before_the_login_never_crashes(garbage: bytes) -> None:
    session = Session()
    session.receive_data(garbage)
    out = drain(session)
    # At most one thing comes out: a login (the garbage held an IMEI preamble) or a close.
    assert len(out) <= 1
    if out:
        assert isinstance(out[0], Login) or (isinstance(out[0], Reply) and out[0].close)

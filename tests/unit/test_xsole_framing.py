"""FrameBuffer: cutting a byte stream into XSole frames (resync, limits, CRC)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from pathlib import Path

import pytest

from shared.protocols.xsole import (
    MAX_LENGTH,
    BadCrc,
    FrameBuffer,
    RawFrame,
    XSoleProtocolError,
    decode,
    encode_frame,
)
from shared.protocols.xsole.framing import crc16

EXAMPLES = json.loads((Path(__file__).parents[1] / "fixtures" / "frames" / "contract_examples.json").read_text())
EXAMPLE_IDS = [example["name"] for example in EXAMPLES]


def frames_of(chunks: Iterable[bytes], buffer: FrameBuffer | None = None) -> list[RawFrame | BadCrc]:
    """Feed `chunks` one after another, draining every whole frame after each."""
    buffer = buffer if buffer is not None else FrameBuffer()
    out: list[RawFrame | BadCrc] = []
    for chunk in chunks:
        buffer.feed(chunk)
        while (frame := buffer.next_frame()) is not None:
            out.append(frame)
    return out


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def with_header(frame_type: int, seq: int, length: int, version: int = 1) -> bytes:
    return b"XS" + struct.pack(">BBHH", version, frame_type, length, seq)


def test_crc_is_ccitt_false() -> None:
    # The catalogue check value of CRC-16/CCITT-FALSE.
    assert crc16(b"123456789") == 0x29B1


# --- contract examples ---------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_contract_example_is_one_whole_frame(example: dict) -> None:
    data = bytes.fromhex(example["hex"])
    buffer = FrameBuffer()
    buffer.feed(data)

    frame = buffer.next_frame()

    assert isinstance(frame, RawFrame)
    assert (frame.type, frame.seq) == (example["type"], example["expected"]["seq"])
    assert len(frame.payload) == len(data) - 10
    assert buffer.next_frame() is None
    assert buffer.buffered == 0
    assert buffer.skipped_bytes == 0


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_encode_frame_rebuilds_contract_example(example: dict) -> None:
    data = bytes.fromhex(example["hex"])
    [frame] = frames_of([data])
    assert isinstance(frame, RawFrame)

    assert encode_frame(frame.type, frame.seq, frame.payload) == data


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_contract_example_byte_by_byte_equals_whole(example: dict) -> None:
    data = bytes.fromhex(example["hex"])
    buffer = FrameBuffer()

    # Nothing comes out before the last byte.
    assert frames_of(byte_by_byte(data[:-1]), buffer) == []
    assert frames_of([data[-1:]], buffer) == frames_of([data])
    assert buffer.skipped_bytes == 0


@pytest.mark.parametrize("index", range(len(EXAMPLES)), ids=EXAMPLE_IDS)
def test_contract_example_glued_to_the_next(index: int) -> None:
    first = bytes.fromhex(EXAMPLES[index]["hex"])
    second = bytes.fromhex(EXAMPLES[(index + 1) % len(EXAMPLES)]["hex"])
    expected = frames_of([first]) + frames_of([second])
    glued = first + second

    assert len(expected) == 2
    assert frames_of([glued]) == expected
    assert frames_of(byte_by_byte(glued)) == expected
    # Every single cut point, including mid-header and mid-CRC of either frame.
    for cut in range(len(glued) + 1):
        assert frames_of([glued[:cut], glued[cut:]]) == expected, cut


def test_all_contract_examples_in_one_stream_decode_in_order() -> None:
    stream = b"".join(bytes.fromhex(example["hex"]) for example in EXAMPLES)

    frames = frames_of([stream])

    assert [(f.type, f.seq) for f in frames] == [(example["type"], example["expected"]["seq"]) for example in EXAMPLES]
    assert [decode(f) for f in frames] == [decode(f) for f in frames_of(byte_by_byte(stream))]


# --- resync --------------------------------------------------------------------


def test_garbage_before_magic_is_skipped_and_counted() -> None:
    frame = encode_frame(0x02, 5, bytes(6))
    garbage = b"\x00\xffnoise\x58\x00S\x53X"  # an 'X' not followed by 'S' is garbage too

    buffer = FrameBuffer()
    frames = frames_of([garbage + frame], buffer)

    assert frames == [RawFrame(0x02, 5, bytes(6))]
    assert buffer.skipped_bytes == len(garbage)
    assert buffer.buffered == 0


def test_garbage_between_frames_is_skipped() -> None:
    one, two = encode_frame(0x02, 1, bytes(6)), encode_frame(0x02, 2, bytes(6))
    buffer = FrameBuffer()

    frames = frames_of([one + b"\x01\x02\x03" + two], buffer)

    assert [f.seq for f in frames] == [1, 2]
    assert buffer.skipped_bytes == 3


def test_garbage_fed_byte_by_byte_counts_the_same() -> None:
    garbage = b"abcXXzX\x00"
    frame = encode_frame(0x13, 9, b"\x00\x01\x00")
    buffer = FrameBuffer()

    frames = frames_of(byte_by_byte(garbage + frame), buffer)

    assert frames == [RawFrame(0x13, 9, b"\x00\x01\x00")]
    assert buffer.skipped_bytes == len(garbage)


def test_lone_trailing_x_is_kept_for_the_next_feed() -> None:
    frame = encode_frame(0x02, 7, bytes(6))
    buffer = FrameBuffer()
    buffer.feed(b"junkX")

    assert buffer.next_frame() is None
    assert buffer.buffered == 1
    assert buffer.skipped_bytes == 4

    buffer.feed(frame[1:])
    assert buffer.next_frame() == RawFrame(0x02, 7, bytes(6))
    assert buffer.skipped_bytes == 4


def test_lone_trailing_byte_other_than_x_is_dropped() -> None:
    buffer = FrameBuffer()
    buffer.feed(b"junk")

    assert buffer.next_frame() is None
    assert buffer.buffered == 0
    assert buffer.skipped_bytes == 4


def test_partial_header_waits_without_skipping() -> None:
    frame = encode_frame(0x02, 3, bytes(6))
    buffer = FrameBuffer()

    for end in range(1, len(frame)):
        buffer.feed(frame[end - 1 : end])
        assert buffer.next_frame() is None
        assert buffer.buffered == end
    buffer.feed(frame[-1:])
    assert buffer.next_frame() == RawFrame(0x02, 3, bytes(6))
    assert buffer.skipped_bytes == 0


# --- CRC and version -------------------------------------------------------------


def corrupt(frame: bytes, index: int) -> bytes:
    """`frame` with one bit of byte `index` (negative counts from the end) flipped."""
    damaged = bytearray(frame)
    damaged[index] ^= 0x01
    return bytes(damaged)


@pytest.mark.parametrize("index", [-1, -2, 8, 10], ids=["crc-lo", "crc-hi", "payload0", "payload2"])
def test_bad_crc_is_reported_without_payload_and_the_next_frame_decodes(index: int) -> None:
    bad = corrupt(encode_frame(0x10, 11, bytes(24)), index)
    good = encode_frame(0x02, 12, bytes(6))

    frames = frames_of([bad + good])

    assert frames == [BadCrc(0x10, 11), RawFrame(0x02, 12, bytes(6))]


def test_wrong_version_is_dropped_like_a_bad_crc() -> None:
    payload = bytes(6)
    body = struct.pack(">BBHH", 2, 0x02, 2 + len(payload), 4) + payload
    frame = b"XS" + body + struct.pack(">H", crc16(body))  # CRC right, version wrong
    good = encode_frame(0x02, 5, payload)

    assert frames_of([frame + good]) == [BadCrc(0x02, 4), RawFrame(0x02, 5, payload)]


def test_bad_crc_frame_is_dropped_whole() -> None:
    # The bad frame's payload holds a valid-looking frame: it must not be resynced into.
    inner = encode_frame(0x02, 99, bytes(6))
    bad = corrupt(encode_frame(0x13, 1, inner), -1)
    buffer = FrameBuffer()

    assert frames_of([bad], buffer) == [BadCrc(0x13, 1)]
    assert buffer.skipped_bytes == 0
    assert buffer.buffered == 0


# --- length limits -------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, MAX_LENGTH + 1, 0xFFFF])
def test_length_outside_limits_is_a_protocol_error(length: int) -> None:
    buffer = FrameBuffer()
    buffer.feed(with_header(0x02, 1, length))

    with pytest.raises(XSoleProtocolError):
        buffer.next_frame()


def test_length_is_checked_as_soon_as_the_header_is_in() -> None:
    buffer = FrameBuffer()
    buffer.feed(with_header(0x02, 1, MAX_LENGTH + 1)[:-1])
    assert buffer.next_frame() is None

    buffer.feed(b"\x00")
    with pytest.raises(XSoleProtocolError):
        buffer.next_frame()


def test_length_two_empty_payload_is_accepted_by_framing() -> None:
    frame = encode_frame(0x02, 7)

    assert len(frame) == 10
    assert frame[4:6] == b"\x00\x02"
    assert frames_of([frame]) == [RawFrame(0x02, 7, b"")]


def test_largest_frame_is_accepted() -> None:
    payload = bytes(range(256)) * 3 + bytes(MAX_LENGTH - 2 - 768)
    frame = encode_frame(0x10, 1, payload)

    assert len(frame) == 8 + MAX_LENGTH
    assert frames_of(byte_by_byte(frame)) == [RawFrame(0x10, 1, payload)]


def test_encode_frame_refuses_an_oversized_payload() -> None:
    with pytest.raises(ValueError):
        encode_frame(0x10, 1, bytes(MAX_LENGTH - 1))


def test_encode_frame_wraps_seq() -> None:
    assert frames_of([encode_frame(0x02, 0x10001, bytes(6))]) == [RawFrame(0x02, 1, bytes(6))]

"""Typed XSole events: contract examples, round trips, malformed payloads, rule 5."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.protocols.xsole import (
    Ack,
    Activity,
    Alarm,
    AlarmKind,
    Command,
    CommandResult,
    FrameBuffer,
    FrameType,
    Heartbeat,
    Login,
    LoginAck,
    MalformedFrame,
    Position,
    RawFrame,
    UnsupportedFrame,
    decode,
    encode,
    encode_frame,
    imei_from_bcd,
    imei_to_bcd,
    messages,
    validate,
)
from shared.protocols.xsole.validation import MAX_FUTURE_SKEW_S, alarm_fix

EXAMPLES = json.loads((Path(__file__).parents[1] / "fixtures" / "frames" / "contract_examples.json").read_text())
EXAMPLE_IDS = [example["name"] for example in EXAMPLES]

IMEI = "356307042441013"
TOKEN = bytes(range(16))
TS = 1767225600  # 2026-01-01T00:00:00Z
NOW = float(TS)


def raw(data: bytes) -> RawFrame:
    """The single frame in `data`, CRC-checked."""
    buffer = FrameBuffer()
    buffer.feed(data)
    frame = buffer.next_frame()
    assert isinstance(frame, RawFrame)
    assert buffer.buffered == 0
    return frame


def position(**changes: int) -> Position:
    fields = dict(
        seq=3,
        ts=TS,
        lat_e7=436163000,
        lon_e7=70553000,
        alt_m=12,
        speed_cms=140,
        course_ddeg=2705,
        sats=9,
        hdop_d=8,
        battery=87,
        flags=1,
    )
    fields.update(changes)
    return Position(**fields)


def alarm(**changes: int) -> Alarm:
    fields = dict(seq=4, ts=TS, kind=AlarmKind.SOS, lat_e7=436163000, lon_e7=70553000, battery=50, flags=1)
    fields.update(changes)
    return Alarm(**fields)


# --- contract examples ---------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_contract_example_decodes_to_expected_fields(example: dict) -> None:
    event = decode(raw(bytes.fromhex(example["hex"])))

    assert type(event).__name__ == example["event"]
    for name, expected in example["expected"].items():
        value = getattr(event, name)
        assert (value.hex() if isinstance(value, bytes) else value) == expected, name


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_contract_example_reencodes_to_identical_bytes(example: dict) -> None:
    data = bytes.fromhex(example["hex"])

    assert encode(decode(raw(data))) == data


def test_contract_position_in_human_units() -> None:
    [example] = [e for e in EXAMPLES if e["name"] == "position"]
    event = decode(raw(bytes.fromhex(example["hex"])))

    assert isinstance(event, Position)
    assert event.lat_e7 / 1e7 == pytest.approx(43.6163)
    assert event.lon_e7 / 1e7 == pytest.approx(7.0553)
    assert event.speed_cms / 100 == pytest.approx(1.40)
    assert event.course_ddeg / 10 == pytest.approx(270.5)
    assert event.fix_valid and not event.buffered


# --- every frame type round-trips ------------------------------------------------

ROUND_TRIPS = [
    (FrameType.LOGIN, Login(1, IMEI, 0x0102, TOKEN)),
    (FrameType.LOGIN, Login(0xFFFF, "000000000000000", 0xFFFF, b"\xff" * 16)),
    (FrameType.HEARTBEAT, Heartbeat(2, TS, 87, -71)),
    (FrameType.HEARTBEAT, Heartbeat(0, 0xFFFFFFFF, 0, -128)),
    (FrameType.POSITION, position()),
    (
        FrameType.POSITION,
        position(lat_e7=-900000000, lon_e7=-1800000000, alt_m=-32768, speed_cms=0xFFFF, course_ddeg=0, flags=0xFF),
    ),
    (FrameType.ACTIVITY, Activity(5, TS, 1234, 2, 110, 64, 2)),
    (FrameType.ALARM, alarm()),
    (FrameType.ALARM, alarm(kind=AlarmKind.TAMPER, lat_e7=-1, lon_e7=-1, flags=3)),
    (FrameType.COMMAND_RESULT, CommandResult(6, 0xFFFE, 1)),
    (FrameType.LOGIN_ACK, LoginAck(1, 0, TS)),
    (FrameType.LOGIN_ACK, LoginAck(1, 3, 0xFFFFFFFF)),
    (FrameType.ACK, Ack(3, 0)),
    (FrameType.ACK, Ack(0xFFFF, 4)),
    (FrameType.COMMAND, Command(1, 1)),
    (FrameType.COMMAND, Command(2, 2, b"\x00\x3c")),
    (FrameType.COMMAND, Command(3, 3, bytes(range(255)))),
]


@pytest.mark.parametrize(
    ("frame_type", "event"), ROUND_TRIPS, ids=[f"{t.name}-{i}" for i, (t, _) in enumerate(ROUND_TRIPS)]
)
def test_every_frame_type_round_trips(frame_type: FrameType, event: object) -> None:
    frame = raw(encode(event))  # type: ignore[arg-type]

    assert (frame.type, frame.seq) == (frame_type, event.seq)  # type: ignore[attr-defined]
    assert decode(frame) == event


ONE_PER_TYPE = {t: e for t, e in reversed(ROUND_TRIPS)}  # the first example of each type
FIXED_LAYOUTS = [(t, e) for t, e in ONE_PER_TYPE.items() if t != FrameType.COMMAND]
FIXED_LAYOUT_IDS = [t.name for t, _ in FIXED_LAYOUTS]


def test_every_frame_type_is_covered() -> None:
    assert {t for t, _ in ROUND_TRIPS} == set(FrameType)


def test_payload_sizes_match_the_contract() -> None:
    sizes = {t: len(raw(encode(e)).payload) for t, e in FIXED_LAYOUTS}
    assert sizes == {
        FrameType.LOGIN: 26,
        FrameType.HEARTBEAT: 6,
        FrameType.POSITION: 22,
        FrameType.ACTIVITY: 10,
        FrameType.ALARM: 15,
        FrameType.COMMAND_RESULT: 3,
        FrameType.LOGIN_ACK: 5,
        FrameType.ACK: 1,
    }


def test_command_payload_is_cmd_argc_args() -> None:
    assert raw(encode(Command(9, 2, b"\x01\x2c"))).payload == b"\x02\x02\x01\x2c"


def test_encode_ack_matches_contract_example() -> None:
    assert messages.encode_ack(3, 0) == bytes.fromhex("5853018000030003005300")


def test_flags_properties() -> None:
    assert position(flags=0).fix_valid is False
    assert position(flags=0b01).fix_valid is True
    assert position(flags=0b10).buffered is True and position(flags=0b10).fix_valid is False
    assert position(flags=0xFC).fix_valid is False and position(flags=0xFC).buffered is False
    assert Activity(1, TS, 0, 0, 0, 0, 2).buffered is True
    assert alarm(flags=2).buffered is True and alarm(flags=2).fix_valid is False


# --- IMEI BCD ------------------------------------------------------------------


def test_imei_bcd_round_trip() -> None:
    assert imei_to_bcd(IMEI) == bytes.fromhex("0356307042441013")
    assert imei_from_bcd(bytes.fromhex("0356307042441013")) == IMEI


@pytest.mark.parametrize("imei", ["35630704244101", "3563070424410133", "35630704244101a", ""])
def test_imei_to_bcd_refuses_non_imeis(imei: str) -> None:
    with pytest.raises(ValueError):
        imei_to_bcd(imei)


@pytest.mark.parametrize("bcd", ["1356307042441013", "035630704244101a", "f356307042441013"])
def test_imei_from_bcd_refuses_non_bcd(bcd: str) -> None:
    assert imei_from_bcd(bytes.fromhex(bcd)) is None


# --- malformed, unsupported, forward compatible ---------------------------------


@pytest.mark.parametrize(("frame_type", "event"), FIXED_LAYOUTS, ids=FIXED_LAYOUT_IDS)
def test_payload_one_byte_short_is_malformed(frame_type: FrameType, event: object) -> None:
    payload = raw(encode(event)).payload  # type: ignore[arg-type]

    decoded = decode(RawFrame(frame_type, 42, payload[:-1]))

    assert isinstance(decoded, MalformedFrame)
    assert (decoded.seq, decoded.type) == (42, frame_type)
    assert decode(RawFrame(frame_type, 42, b"")).type == frame_type


@pytest.mark.parametrize(("frame_type", "event"), FIXED_LAYOUTS, ids=FIXED_LAYOUT_IDS)
def test_longer_payload_is_accepted_and_its_tail_ignored(frame_type: FrameType, event: object) -> None:
    payload = raw(encode(event)).payload + b"\xaa\xbb\xcc"  # type: ignore[arg-type]

    assert decode(RawFrame(frame_type, event.seq, payload)) == event  # type: ignore[attr-defined]


def test_login_with_non_bcd_imei_is_malformed() -> None:
    payload = bytes.fromhex("035630704244101a") + struct.pack(">H", 1) + TOKEN

    decoded = decode(RawFrame(FrameType.LOGIN, 1, payload))

    assert isinstance(decoded, MalformedFrame) and decoded.type == FrameType.LOGIN


def test_command_with_args_cut_short_is_malformed() -> None:
    assert isinstance(decode(RawFrame(FrameType.COMMAND, 1, b"\x02\x03\x00\x01")), MalformedFrame)
    assert isinstance(decode(RawFrame(FrameType.COMMAND, 1, b"\x02")), MalformedFrame)


def test_command_bytes_after_args_are_ignored() -> None:
    assert decode(RawFrame(FrameType.COMMAND, 1, b"\x03\x01\x05\xee\xee")) == Command(1, 3, b"\x05")


@pytest.mark.parametrize("frame_type", [0x00, 0x03, 0x05, 0x14, 0x82, 0xFF])
def test_unknown_type_is_unsupported(frame_type: int) -> None:
    assert decode(raw(encode_frame(frame_type, 8, b"\x01\x02"))) == UnsupportedFrame(8, frame_type)


# --- validation (contract rule 5) -------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        Heartbeat(2, TS, 87, -71),
        position(),
        position(lat_e7=-1, lon_e7=-1, flags=0),
        Activity(5, TS, 1234, 2, 110, 64, 2),
        alarm(),
        CommandResult(6, 0xFFFE, 1),
    ],
    ids=lambda e: type(e).__name__,
)
def test_in_range_events_are_valid(event: object) -> None:
    assert validate(event, now=NOW) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("lat_e7", [900000001, -900000001, 2**31 - 1, -(2**31)])
def test_latitude_beyond_90_is_refused(lat_e7: int) -> None:
    assert validate(position(lat_e7=lat_e7), now=NOW) is not None


@pytest.mark.parametrize("lon_e7", [1800000001, -1800000001])
def test_longitude_beyond_180_is_refused(lon_e7: int) -> None:
    assert validate(position(lon_e7=lon_e7), now=NOW) is not None


def test_course_above_3599_is_refused() -> None:
    assert validate(position(course_ddeg=3600), now=NOW) is not None
    assert validate(position(course_ddeg=0xFFFF), now=NOW) is not None


@pytest.mark.parametrize(
    "event",
    [
        position(battery=101),
        Heartbeat(1, TS, 101, -70),
        Activity(1, TS, 10, 2, 100, 101, 0),
        position(battery=255),
    ],
    ids=["position", "heartbeat", "activity", "position-255"],
)
def test_battery_above_100_is_refused(event: object) -> None:
    assert validate(event, now=NOW) is not None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make",
    [
        lambda ts: position(ts=ts),
        lambda ts: Heartbeat(1, ts, 50, -70),
        lambda ts: Activity(1, ts, 10, 2, 100, 50, 0),
    ],
    ids=["position", "heartbeat", "activity"],
)
def test_timestamp_more_than_five_minutes_ahead_is_refused(make: Callable[[int], object]) -> None:
    assert MAX_FUTURE_SKEW_S == 300
    assert validate(make(TS + 301), now=NOW) is not None  # type: ignore[arg-type]
    assert validate(make(TS + 300), now=NOW) is None  # type: ignore[arg-type]
    # Old timestamps are fine: buffered frames arrive late by design.
    assert validate(make(TS - 86400 * 30), now=NOW) is None  # type: ignore[arg-type]


def test_exact_boundaries_are_accepted() -> None:
    for event in [
        position(lat_e7=900000000, lon_e7=1800000000),
        position(lat_e7=-900000000, lon_e7=-1800000000),
        position(course_ddeg=3599),
        position(battery=100),
        position(ts=TS + 300),
        Heartbeat(1, TS + 300, 100, -128),
    ]:
        assert validate(event, now=NOW) is None, event


def test_validation_uses_the_now_passed_in() -> None:
    event = position(ts=TS + 1000)

    assert validate(event, now=NOW) is not None
    assert validate(event, now=NOW + 700) is None


def test_unknown_activity_state_is_refused() -> None:
    assert validate(Activity(1, TS, 0, 5, 0, 50, 0), now=NOW) is None
    assert validate(Activity(1, TS, 0, 6, 0, 50, 0), now=NOW) is not None


@pytest.mark.parametrize(
    "event",
    [
        alarm(lat_e7=900000001),
        alarm(lon_e7=-1800000001),
        alarm(battery=255),
        alarm(ts=TS + 86400),
        alarm(lat_e7=0, lon_e7=0, flags=0),
    ],
    ids=["lat", "lon", "battery", "future-ts", "no-fix"],
)
def test_alarm_is_never_refused_for_its_values(event: Alarm) -> None:
    assert validate(event, now=NOW) is None


@pytest.mark.parametrize("kind", [0, 7, 255])
def test_alarm_of_unknown_kind_is_refused(kind: int) -> None:
    assert validate(alarm(kind=kind), now=NOW) is not None


def test_every_known_alarm_kind_is_accepted() -> None:
    for kind in AlarmKind:
        assert validate(alarm(kind=kind), now=NOW) is None


def test_command_result_and_login_have_nothing_to_refuse() -> None:
    assert validate(CommandResult(1, 2, 9), now=NOW) is None
    assert validate(Login(1, IMEI, 1, TOKEN), now=NOW) is None


def test_alarm_fix() -> None:
    assert alarm_fix(alarm()) == (436163000, 70553000)
    assert alarm_fix(alarm(lat_e7=900000000, lon_e7=-1800000000)) == (900000000, -1800000000)
    assert alarm_fix(alarm(lat_e7=0, lon_e7=5)) == (0, 5)
    assert alarm_fix(alarm(lat_e7=0, lon_e7=0)) is None
    assert alarm_fix(alarm(lat_e7=900000001)) is None
    assert alarm_fix(alarm(lon_e7=-1800000001)) is None


def test_alarm_kinds_name_the_api_alert_kinds() -> None:
    assert [k.alert_kind for k in AlarmKind] == [
        "sos",
        "fall",
        "no_motion",
        "low_battery",
        "off_foot",
        "tamper",
    ]

"""DeviceSession: the per-connection rules of XSole v1 (login, ACKs, closing)."""

from __future__ import annotations

import struct

import pytest

from shared.protocols.xsole import (
    Ack,
    AckStatus,
    Activity,
    Alarm,
    Command,
    CommandResult,
    DeviceSession,
    FrameBuffer,
    FrameType,
    Heartbeat,
    Login,
    LoginAck,
    LoginStatus,
    Position,
    RawFrame,
    Reply,
    SessionState,
    decode,
    encode,
    encode_frame,
)
from shared.protocols.xsole.framing import MAX_LENGTH
from shared.protocols.xsole.session import MAX_BAD_FRAMES_IN_A_ROW

IMEI = "356307042441013"
TOKEN = bytes(range(16))
TS = 1767225600
LOGIN = Login(1, IMEI, 0x0102, TOKEN)


def heartbeat(seq: int) -> bytes:
    return encode(Heartbeat(seq, TS, 87, -71))


def bad_crc(seq: int) -> bytes:
    frame = bytearray(heartbeat(seq))
    frame[-1] ^= 0xFF
    return bytes(frame)


def server_frame(data: bytes) -> object:
    """The one event in bytes the session produced for the device."""
    buffer = FrameBuffer()
    buffer.feed(data)
    frame = buffer.next_frame()
    assert isinstance(frame, RawFrame)
    assert buffer.buffered == 0
    return decode(frame)


def online_session() -> DeviceSession:
    session = DeviceSession()
    session.receive_data(encode(LOGIN))
    assert session.next_event() == LOGIN
    session.accept_login(IMEI, TS, LOGIN.seq)
    return session


def drain(session: DeviceSession) -> list[object]:
    events = []
    while (event := session.next_event()) is not None:
        events.append(event)
    return events


# --- login -----------------------------------------------------------------------


def test_login_pauses_until_accepted() -> None:
    session = DeviceSession()
    session.receive_data(encode(LOGIN) + heartbeat(2))

    assert session.state is SessionState.AWAITING_LOGIN
    assert session.next_event() == LOGIN
    assert session.state is SessionState.LOGIN_PENDING
    # The heartbeat is buffered but held back until the verdict.
    assert session.next_event() is None
    assert session.next_event() is None

    reply = session.accept_login(IMEI, TS + 5, LOGIN.seq)

    assert server_frame(reply) == LoginAck(LOGIN.seq, LoginStatus.ACCEPTED, TS + 5)
    assert session.state is SessionState.ONLINE
    assert session.imei == IMEI
    assert session.next_event() == Heartbeat(2, TS, 87, -71)


@pytest.mark.parametrize("status", [LoginStatus.UNKNOWN_DEVICE, LoginStatus.BAD_TOKEN, LoginStatus.DISABLED])
def test_rejected_login_gets_its_login_ack_and_closes(status: LoginStatus) -> None:
    session = DeviceSession()
    session.receive_data(encode(LOGIN) + heartbeat(2))
    assert session.next_event() == LOGIN

    reply = session.reject_login(status, TS, LOGIN.seq)

    assert isinstance(reply, Reply) and reply.close
    assert server_frame(reply.data) == LoginAck(LOGIN.seq, status, TS)
    assert session.state is SessionState.CLOSED
    assert session.next_event() is None  # the buffered heartbeat is never handed out


def test_verdict_without_a_pending_login_is_a_bug() -> None:
    session = DeviceSession()
    with pytest.raises(RuntimeError):
        session.accept_login(IMEI, TS, 1)
    with pytest.raises(RuntimeError):
        online_session().reject_login(LoginStatus.BAD_TOKEN, TS, 1)


@pytest.mark.parametrize(
    "data",
    [
        heartbeat(7),
        encode(Position(7, TS, 0, 0, 0, 0, 0, 0, 0, 50, 0)),
        encode_frame(0x05, 7, b""),
        encode_frame(FrameType.POSITION, 7, b"\x00"),
    ],
    ids=["heartbeat", "position", "unknown-type", "malformed-position"],
)
def test_frame_before_login_gets_ack_3_and_closes(data: bytes) -> None:
    session = DeviceSession()
    session.receive_data(data + encode(LOGIN))

    reply = session.next_event()

    assert isinstance(reply, Reply) and reply.close
    assert server_frame(reply.data) == Ack(7, AckStatus.NOT_LOGGED_IN)
    assert session.state is SessionState.CLOSED
    assert session.next_event() is None


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        struct.pack(">8sH", bytes.fromhex("0356307042441013"), 1),  # no token
        bytes.fromhex("035630704244101a") + struct.pack(">H", 1) + TOKEN,  # not BCD
    ],
    ids=["empty", "short", "not-bcd"],
)
def test_malformed_login_closes(payload: bytes) -> None:
    session = DeviceSession()
    session.receive_data(encode_frame(FrameType.LOGIN, 1, payload) + encode(LOGIN))

    reply = session.next_event()

    assert isinstance(reply, Reply) and reply.close
    assert reply.data == b""
    assert session.state is SessionState.CLOSED
    assert session.next_event() is None


@pytest.mark.parametrize(
    "login",
    [
        encode(Login(9, IMEI, 1, TOKEN)),
        encode_frame(FrameType.LOGIN, 9, b"\x01"),
    ],
    ids=["well-formed", "malformed"],
)
def test_second_login_gets_ack_2_and_stays_open(login: bytes) -> None:
    session = online_session()
    session.receive_data(login + heartbeat(10))

    reply = session.next_event()

    assert isinstance(reply, Reply) and not reply.close
    assert server_frame(reply.data) == Ack(9, AckStatus.UNSUPPORTED)
    assert session.next_event() == Heartbeat(10, TS, 87, -71)


# --- telemetry and ACKs ------------------------------------------------------------


def test_telemetry_comes_out_in_order_for_the_caller_to_ack() -> None:
    events = [
        Heartbeat(2, TS, 87, -71),
        Position(3, TS, 436163000, 70553000, 12, 140, 2705, 9, 8, 87, 1),
        Activity(4, TS, 100, 2, 110, 87, 0),
        Alarm(5, TS, 1, 436163000, 70553000, 87, 1),
        CommandResult(6, 1, 0),
    ]
    session = online_session()
    session.receive_data(b"".join(encode(e) for e in events))

    assert drain(session) == events
    assert session.state is SessionState.ONLINE


def test_ack_is_the_contract_frame() -> None:
    session = online_session()

    assert session.ack(3) == bytes.fromhex("5853018000030003005300")
    assert server_frame(session.ack(0xFFFF, AckStatus.BUSY)) == Ack(0xFFFF, AckStatus.BUSY)


@pytest.mark.parametrize(
    ("frame_type", "payload"),
    [
        (0x05, b""),
        (0x05, b"\x01\x02\x03"),
        (FrameType.ACK, b"\x00"),
        (FrameType.ACK, b""),
        (FrameType.LOGIN_ACK, b"\x00"),
        (FrameType.COMMAND, b"\x01\x00"),
        (FrameType.COMMAND, b"\x01\x05"),
    ],
    ids=["0x05", "0x05-payload", "ack", "ack-empty", "login-ack-short", "command", "command-short"],
)
def test_unsupported_type_gets_ack_2_without_closing(frame_type: int, payload: bytes) -> None:
    session = online_session()
    session.receive_data(encode_frame(frame_type, 21, payload) + heartbeat(22))

    reply = session.next_event()

    assert isinstance(reply, Reply) and not reply.close
    assert server_frame(reply.data) == Ack(21, AckStatus.UNSUPPORTED)
    assert session.state is SessionState.ONLINE
    assert session.next_event() == Heartbeat(22, TS, 87, -71)


@pytest.mark.parametrize(
    "frame_type",
    [FrameType.HEARTBEAT, FrameType.POSITION, FrameType.ACTIVITY, FrameType.ALARM, FrameType.COMMAND_RESULT],
)
def test_malformed_telemetry_gets_ack_1_without_closing(frame_type: FrameType) -> None:
    session = online_session()
    session.receive_data(encode_frame(frame_type, 31, b"\x00\x01") + heartbeat(32))

    reply = session.next_event()

    assert isinstance(reply, Reply) and not reply.close
    assert reply.reason
    assert server_frame(reply.data) == Ack(31, AckStatus.REJECTED)
    assert session.next_event() == Heartbeat(32, TS, 87, -71)


# --- bad frames and framing errors -----------------------------------------------


def test_ten_bad_crc_frames_in_a_row_close() -> None:
    assert MAX_BAD_FRAMES_IN_A_ROW == 10
    session = online_session()
    session.receive_data(b"".join(bad_crc(s) for s in range(9)))

    assert session.next_event() is None  # dropped without any ACK
    assert session.bad_frames_in_a_row == 9
    assert session.state is SessionState.ONLINE

    session.receive_data(bad_crc(9) + heartbeat(10))
    reply = session.next_event()

    assert isinstance(reply, Reply) and reply.close and reply.data == b""
    assert session.state is SessionState.CLOSED
    assert session.next_event() is None


def test_a_good_frame_resets_the_bad_frame_count() -> None:
    session = online_session()
    session.receive_data(b"".join(bad_crc(s) for s in range(9)) + heartbeat(9))

    assert session.next_event() == Heartbeat(9, TS, 87, -71)
    assert session.bad_frames_in_a_row == 0

    session.receive_data(b"".join(bad_crc(s) for s in range(9)) + heartbeat(19))
    assert session.next_event() == Heartbeat(19, TS, 87, -71)
    assert session.state is SessionState.ONLINE


def test_bad_frames_before_login_count_too() -> None:
    session = DeviceSession()
    session.receive_data(b"".join(bad_crc(s) for s in range(10)) + encode(LOGIN))

    reply = session.next_event()

    assert isinstance(reply, Reply) and reply.close


def test_bad_frames_then_login_is_fine() -> None:
    session = DeviceSession()
    session.receive_data(b"".join(bad_crc(s) for s in range(9)) + encode(LOGIN))

    assert session.next_event() == LOGIN


@pytest.mark.parametrize("length", [1, MAX_LENGTH + 1])
def test_length_out_of_range_closes(length: int) -> None:
    session = online_session()
    session.receive_data(b"XS" + struct.pack(">BBHH", 1, FrameType.HEARTBEAT, length, 5))

    reply = session.next_event()

    assert isinstance(reply, Reply) and reply.close and reply.data == b""
    assert session.state is SessionState.CLOSED


def test_skipped_bytes_are_exposed() -> None:
    session = DeviceSession()
    session.receive_data(b"\r\n\r\n" + encode(LOGIN))

    assert session.next_event() == LOGIN
    assert session.skipped_bytes == 4


def test_frames_split_anywhere_come_out_whole() -> None:
    data = encode(LOGIN) + heartbeat(2) + heartbeat(3)
    session = DeviceSession()
    events: list[object] = []
    for i in range(len(data)):
        session.receive_data(data[i : i + 1])
        events += drain(session)
        if session.state is SessionState.LOGIN_PENDING:
            session.accept_login(IMEI, TS, LOGIN.seq)
            events += drain(session)

    assert events == [LOGIN, Heartbeat(2, TS, 87, -71), Heartbeat(3, TS, 87, -71)]


# --- commands --------------------------------------------------------------------


def test_command_carries_the_seq_the_caller_chose() -> None:
    session = online_session()
    session.receive_data(heartbeat(500))
    drain(session)

    assert server_frame(session.command(7, 4)) == Command(7, 4, b"")
    assert server_frame(session.command(8, 2, b"\x00\x3c")) == Command(8, 2, b"\x00\x3c")


def test_command_seq_is_cut_to_16_bits() -> None:
    session = online_session()

    assert server_frame(session.command(0x10003, 1)) == Command(3, 1, b"")

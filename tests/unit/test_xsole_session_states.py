"""DeviceSession's state changes a transport may ask for: resume, a LOGIN while online, why it ended."""

from __future__ import annotations

import pytest

from shared.protocols.xsole import (
    Ack,
    DeviceSession,
    FrameBuffer,
    Heartbeat,
    Login,
    LoginStatus,
    SessionEnd,
    SessionState,
    decode,
    encode,
    encode_frame,
)

IMEI = "356307042441013"
LOGIN = Login(1, IMEI, 0x0102, bytes(range(16)))
TS = 1767225600


def test_resume_continues_a_login_accepted_on_another_stream() -> None:
    session = DeviceSession()
    session.resume(IMEI)
    assert session.state is SessionState.ONLINE and session.imei == IMEI
    session.receive_data(encode(Heartbeat(2, TS, 87, -71)))
    assert session.next_event() == Heartbeat(2, TS, 87, -71)


def test_only_a_fresh_session_can_be_resumed() -> None:
    session = DeviceSession()
    session.receive_data(encode(LOGIN))
    session.next_event()
    with pytest.raises(RuntimeError):
        session.resume(IMEI)


def test_with_relogin_a_login_while_online_is_handed_out_for_its_verdict() -> None:
    session = DeviceSession(relogin=True)
    session.resume(IMEI)
    session.receive_data(encode(Login(5, IMEI, 0x0102, bytes(16))))
    assert session.next_event() == Login(5, IMEI, 0x0102, bytes(16))
    assert session.state is SessionState.LOGIN_PENDING
    session.accept_login(IMEI, TS, 5)
    assert _state(session) is SessionState.ONLINE


def _state(session: DeviceSession) -> SessionState:
    return session.state  # read afresh: mypy would keep the narrowing of the line before


def test_without_relogin_a_second_login_gets_ack_2() -> None:
    session = DeviceSession()
    session.resume(IMEI)
    session.receive_data(encode(Login(5, IMEI, 0x0102, bytes(16))))
    reply = session.next_event()
    frames = FrameBuffer()
    frames.feed(reply.data)  # type: ignore[union-attr]
    assert decode(frames.next_frame()) == Ack(5, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (encode(Heartbeat(1, TS, 87, -71)), SessionEnd.FRAME_BEFORE_LOGIN),
        (encode_frame(0x01, 1, b"\x00"), SessionEnd.MALFORMED_LOGIN),
        (b"XS\x01\x02\xff\xff\x00\x01", SessionEnd.BAD_FRAMING),
        (b"", SessionEnd.BAD_FRAMES),  # ten heartbeats with a bad CRC, made below
    ],
)
def test_a_session_that_closes_itself_says_why(data: bytes, end: SessionEnd) -> None:
    session = DeviceSession()
    if end is SessionEnd.BAD_FRAMES:
        session.resume(IMEI)
        bad = bytearray(encode(Heartbeat(1, TS, 87, -71)))
        bad[-1] ^= 0xFF  # a bad CRC
        data = bytes(bad) * 10
    session.receive_data(data)
    reply = session.next_event()
    assert reply is not None and reply.close and reply.end is end  # type: ignore[union-attr]


def test_a_refused_login_says_why() -> None:
    session = DeviceSession()
    session.receive_data(encode(LOGIN))
    session.next_event()
    assert session.reject_login(LoginStatus.BAD_TOKEN, TS, 1).end is SessionEnd.LOGIN_REFUSED

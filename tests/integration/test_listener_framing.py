"""Contract §1 rules 4 and 6 and TCP framing, against the real listener.

TCP may split or merge frames anywhere; garbage is skipped up to the next
magic; bad CRCs are dropped silently until ten in a row; a length outside
2..1024 or a silent connection ends the session.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from shared.protocols.xsole import Login, LoginAck, encode, encode_frame
from tests.conftest import embedded_settings

IMEI = "356307042441013"


@pytest.fixture
def solewatch_settings(request, tmp_path):
    """Default settings, or the overrides a test passes by indirect parametrization."""
    return embedded_settings(tmp_path / "data", **getattr(request, "param", {}))


def bad_crc(event: object) -> bytes:
    frame = bytearray(encode(event))  # type: ignore[arg-type]
    frame[-1] ^= 0xFF
    return bytes(frame)


async def stored_seqs(solewatch, imei: str = IMEI) -> list[int]:
    device = await solewatch.store.device_by_imei(imei)
    return sorted(row.seq for row in await solewatch.store.positions(device.id, limit=1000))


# -- split and merged frames -----------------------------------------------------------


@pytest.mark.parametrize("delivery", ["byte_by_byte", "one_write"])
async def test_login_and_positions_are_acked_and_stored_once_however_tcp_cuts_them(solewatch, delivery):
    token = await solewatch.register(IMEI)
    device = await solewatch.device()
    login = Login(device.next_seq(), IMEI, 0x0102, token)
    positions = [device.position(lat_e7=436163000 + i) for i in range(5)]

    if delivery == "byte_by_byte":
        await device.send_in_pieces(login, *positions)
    else:
        await device.send(login, *positions)

    reply = await device.recv()
    assert isinstance(reply, LoginAck) and (reply.seq, reply.status) == (login.seq, 0)
    assert await device.recv_ack_list(5) == [(p.seq, 0) for p in positions]
    assert await stored_seqs(solewatch) == [p.seq for p in positions]
    await device.close()


async def test_frames_cut_in_odd_pieces_are_all_acked(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    frames = [device.position(), device.heartbeat(), device.activity(), device.position()]

    await device.send_in_pieces(*frames, size=7)

    assert await device.recv_ack_list(4) == [(f.seq, 0) for f in frames]
    await device.close()


# -- resync, CRC and length (rule 4) -----------------------------------------------------------


async def test_garbage_before_a_magic_is_skipped(solewatch):
    token = await solewatch.register(IMEI)
    device = await solewatch.device()
    login = Login(device.next_seq(), IMEI, 0x0102, token)
    first, second = device.position(), device.position()

    await device.send(b"\x00\xffnoise", login, b"junk", first, b"\x01\x02\x03XX", second)

    reply = await device.recv()
    assert isinstance(reply, LoginAck) and reply.status == 0
    assert await device.recv_ack_list(2) == [(first.seq, 0), (second.seq, 0)]
    assert await stored_seqs(solewatch) == [first.seq, second.seq]
    await device.close()


async def test_frame_with_bad_crc_gets_no_ack_and_later_frames_still_do(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    before, corrupted, after = device.position(), device.position(), device.position()

    await device.send(before, bad_crc(corrupted), after)

    # ACKs come in order, so an ACK for the corrupted frame would show up here.
    assert await device.recv_ack_list(2) == [(before.seq, 0), (after.seq, 0)]
    assert await stored_seqs(solewatch) == [before.seq, after.seq]
    await device.close()


async def test_ten_bad_crcs_in_a_row_close_the_connection(solewatch):
    device = await solewatch.logged_in_device(IMEI)

    await device.send(*(bad_crc(device.position()) for _ in range(10)))

    assert await device.frames_until_closed() == []
    assert await stored_seqs(solewatch) == []


async def test_nine_bad_crcs_then_a_good_frame_keep_the_connection(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    good = [device.position(), device.position()]

    # A good frame resets the count: 18 bad frames, never 10 in a row.
    await device.send(*(bad_crc(device.position()) for _ in range(9)), good[0])
    await device.send(*(bad_crc(device.position()) for _ in range(9)), good[1])

    assert await device.recv_ack_list(2) == [(good[0].seq, 0), (good[1].seq, 0)]
    still_open = device.heartbeat()
    await device.send(still_open)
    assert await device.recv_ack_list(1) == [(still_open.seq, 0)]
    await device.close()


@pytest.mark.parametrize("length", [0x0000, 0x0001, 0x0401, 0xFFFF])
async def test_length_outside_2_to_1024_closes_the_connection_at_once(solewatch, length):
    device = await solewatch.logged_in_device(IMEI)

    # Only the header: the listener must not wait for a body it cannot trust.
    await device.send(b"XS\x01\x10" + struct.pack(">HH", length, device.next_seq()))

    assert await device.frames_until_closed() == []


@pytest.mark.parametrize("length", [0x0001, 0x0401])
async def test_length_outside_limits_before_login_closes_too(solewatch, length):
    device = await solewatch.device()

    await device.send(b"XS\x01\x01" + struct.pack(">HH", length, 1))

    assert await device.frames_until_closed() == []


async def test_frames_at_the_length_limits_are_not_refused(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    position = device.position()
    # A longer payload is accepted and its tail ignored (newer firmware may append fields).
    padded = encode_frame(0x10, position.seq, encode(position)[8:-2].ljust(1022, b"\x00"))

    await device.send(padded)

    assert await device.recv_ack_list(1) == [(position.seq, 0)]
    await device.close()


# -- types the listener does not take ----------------------------------------------------------


@pytest.mark.parametrize("frame_type", [0x05, 0x80, 0x81, 0x90, 0x01])
async def test_unsupported_type_gets_ack_2_and_the_connection_stays_open(solewatch, frame_type):
    device = await solewatch.logged_in_device(IMEI)
    seq = device.next_seq()
    payload = {0x01: bytes(26), 0x80: b"\x00", 0x81: b"\x00" * 5, 0x90: b"\x01\x00"}.get(frame_type, b"\x00\x01")
    later = device.position()

    await device.send(encode_frame(frame_type, seq, payload), later)

    assert await device.recv_ack_list(2) == [(seq, 2), (later.seq, 0)]
    await device.close()


async def test_truncated_telemetry_payload_gets_ack_1_and_the_connection_stays_open(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    seq = device.next_seq()
    later = device.position()

    await device.send(encode_frame(0x10, seq, b"\x00\x01\x02"), later)

    assert await device.recv_ack_list(2) == [(seq, 1), (later.seq, 0)]
    assert await stored_seqs(solewatch) == [later.seq]
    await device.close()


# -- idle timeout (rule 6) --------------------------------------------------------------------

SHORT_IDLE = pytest.mark.parametrize(
    "solewatch_settings", [{"idle_timeout": 0.5}], indirect=True, ids=["idle_timeout=0.5"]
)


@SHORT_IDLE
async def test_silent_logged_in_connection_is_closed(solewatch):
    device = await solewatch.logged_in_device(IMEI)

    assert await device.closed_by_server(timeout=5)


@SHORT_IDLE
async def test_connection_that_never_logs_in_is_closed(solewatch):
    device = await solewatch.device()

    assert await device.closed_by_server(timeout=5)


@pytest.mark.parametrize("solewatch_settings", [{"login_timeout": 0.5}], indirect=True, ids=["login_timeout=0.5"])
async def test_a_connection_that_chatters_without_logging_in_is_closed(solewatch):
    # Not silent, so the idle timeout (300 s) never fires: only the login deadline does.
    device = await solewatch.device()
    closed = False
    for _ in range(40):
        try:
            await device.send(b"noise, no magic here")
        except ConnectionError:
            closed = True
            break
        if await device.closed_by_server(timeout=0.1):
            closed = True
            break
    assert closed, "a connection that never logged in was kept for 4 s"


@pytest.mark.parametrize("solewatch_settings", [{"login_timeout": 0.5}], indirect=True, ids=["login_timeout=0.5"])
async def test_the_login_deadline_spares_logged_in_devices(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    await asyncio.sleep(1.2)
    heartbeat = device.heartbeat()
    await device.send(heartbeat)
    assert await device.recv_acks(1) == {heartbeat.seq: 0}


@SHORT_IDLE
async def test_connection_sending_heartbeats_stays_open(solewatch):
    device = await solewatch.logged_in_device(IMEI)

    for _ in range(9):  # 1.8 s in all, far past the 0.5 s timeout
        heartbeat = device.heartbeat()
        await device.send(heartbeat)
        assert await device.recv_acks(1) == {heartbeat.seq: 0}
        await asyncio.sleep(0.2)

    last = device.heartbeat()
    await device.send(last)
    assert await device.recv_acks(1) == {last.seq: 0}
    await device.close()

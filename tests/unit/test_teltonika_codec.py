"""Teltonika Codec 8 / 8 Extended / 16 over TCP, with Codec 12 commands: framing, decoding, replies, the
session's rules and the device side's round trip.

Vectors come from Teltonika's wiki ("Teltonika Data Sending Protocols",
https://wiki.teltonika-gps.com/view/Teltonika_Data_Sending_Protocols, and "Sending Codec12 commands using
Hercules") and from Traccar (Apache-2.0, https://github.com/traccar/traccar,
src/test/java/org/traccar/protocol/TeltonikaProtocolDecoderTest.java, test `testDecode`, and
TeltonikaProtocolEncoderTest.java, test `testEncode`); each says where it comes from.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.protocols.teltonika import Device, Session
from shared.protocols.teltonika.avl import Record, encode_records
from shared.protocols.teltonika.framing import CODEC_8, CODEC_8_EXTENDED, CODEC_16, MAX_DATA_LENGTH, encode_packet
from shared.protocols.tracker import BATTERY_UNKNOWN, FromServer, kmh_to_cms, stable_seq
from shared.protocols.xsole.constants import (
    FLAG_FIX_VALID,
    AckStatus,
    AlarmKind,
    CommandCode,
    CommandStatus,
    LoginStatus,
)
from shared.protocols.xsole.messages import Alarm, CommandResult, Heartbeat, Login, Position
from shared.protocols.xsole.session import Reply, SessionEnd, SessionState

IMEI = "356307042441013"
# Wiki, "Teltonika Data Sending Protocols", communication with server: the IMEI 356307042441013 as sent.
WIKI_IMEI = bytes.fromhex("000F333536333037303432343431303133")
# Wiki, Codec 8, first example: one record of 2019-06-10 10:04:46 UTC, no GPS data, IO 21=3 1=1 66=0x5E0F
# 241=0x601A 78=0. The server answers 00000001.
WIKI_CODEC8_1 = bytes.fromhex(
    "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A"
    "014E0000000000000000010000C7CF"
)
# Wiki, Codec 8, second example: one record of 2019-06-10 10:05:36 UTC, no GPS data.
WIKI_CODEC8_2 = bytes.fromhex(
    "000000000000002808010000016B40D9AD80010000000000000000000000000000000103021503010101425E100000010000F22A"
)
# Wiki, Codec 8, third example: two records (10:01:01 and 10:01:19 UTC), no GPS data; answered 00000002.
WIKI_CODEC8_3 = bytes.fromhex(
    "000000000000004308020000016B40D57B480100000000000000000000000000000001010101000000000000016B40D5C19801"
    "0000000000000000000000000000000101010101000000020000252C"
)
# Wiki, Codec 8 Extended example: one record of 2019-06-10 11:36:32 UTC, no GPS data, 2-byte ids and counts.
WIKI_CODEC8E = bytes.fromhex(
    "000000000000004A8E010000016B412CEE000100000000000000000000000000000000010005000100010100010011001D0001"
    "0010015E2C880002000B000000003544C87A000E000000001DD7E06A00000100002994"
)
# Wiki, Codec 12 "getio" example: the device's answer "DI1:0 DI2:0 DI3:0 AIN:24 DO1:0 DO2:0".
WIKI_GETIO_ANSWER = bytes.fromhex(
    "000000000000002C0C0106000000244449313A30204449323A30204449333A302041494E3A323420444F313A3020444F323A30010000F925"
)
# Wiki, "Sending Codec12 commands using Hercules": the getinfo command.
WIKI_GETINFO_COMMAND = bytes.fromhex("000000000000000F0C010500000007676574696E666F0100004312")
# Traccar TeltonikaProtocolEncoderTest.testEncode: the custom command "setdigout 11".
TRACCAR_SETDIGOUT = bytes.fromhex("00000000000000140c01050000000c7365746469676f7574203131010000bed5")
# Traccar TeltonikaProtocolDecoderTest.testDecode: Codec 8, one record near Vienna (48.1523066 N,
# 16.3745183 E), alt 190 m, angle 198, 15 satellites, 83 km/h, IO 252 (unplug) = 0.
TRACCAR_CODEC8 = bytes.fromhex(
    "000000000000004c08010000016818d500580009c28d9f1cb3757a00be00c60f0053000f06f0011503c80001011d00fc0007"
    "423799180053cdf80dce426f430f88190bb8560bb802f100005aa110002887e000010000ee8d"
)
# Traccar testDecode: Codec 8 Extended, four records; the first has IO 247 (crash detection) = 1, the
# third IO 252 (unplug) = 1, the fourth IO 247 = 5 (a crash trace, not a crash).
TRACCAR_CODEC8E_CRASH = bytes.fromhex(
    "00000000000004258e0400000182a701b49301d5d90ab7ebe4aae101be003d12000000f7003d000e00f70100ef0000f00000"
    "500500150200c800004501000100001d00001400001600001700007157010701001d00b5000b00b600060042304000180000"
    "00cd223f00ce741700430f8900440000000d00010011ffe50012001f0013ffce000f03e800190bb8001a0bb8001b0bb8001c"
    "0bb800560bb800680bb8006a0bb8006c0bb8010e0000011100000114000001170000014f0000015000000151000001520000"
    "000a00f100011d2a00c700000000001000b9addc000c0000acb6000400000000013200000000013300000000013400000000"
    "01350000000001c1000000000003000b000000d14675f36000ee0000000000000000000e0000000003fd509f0005014b0000"
    "014c0000014d0000014e0000018300222d3333373333382e0100000053a6fb624588040001ba86064f0eae51c0fdaf4d3de5"
    "00000182a701b82001d5d90ab7ebe4aae101be003d12000000f0003c000d00ef0000f00100500500150200c8000045010001"
    "00001d00001400001600001700007152010701001d00b5000900b60006004217e50018000000cd223f00ce741700430f5c00"
    "440000000d00010011fed60012fd1d0013f1f2000f03e800190bb8001a0bb8001b0bb8001c0bb800560bb800680bb8006a0b"
    "b8006c0bb8010e0000011100000114000001170000014f0000015000000151000001520000000a00f100011d2a00c7000000"
    "00001000b9addc000c0000acb600040000000001320000000001330000000001340000000001350000000001c10000000000"
    "03000b000000d14675f36000ee0000000000000000000e0000000003fd509f0005014b0000014c0000014d0000014e000001"
    "8300222d3333373333352e353833332d303730373139362e323333332b3030302e3434362f00000182a701bc0801d5d90ab7"
    "ebe4aae101be003d12000000fc003d000e00ef0000f00100500500150200c800004501000100001d00001400001600001700"
    "00714d01070100fc01001d00b5000900b60006004217e50018000000cd223f00ce741700430f5c00440000000d00010011fe"
    "d60012fd1d0013f1f2000f03e800190bb8001a0bb8001b0bb8001c0bb800560bb800680bb8006a0bb8006c0bb8010e000001"
    "1100000114000001170000014f0000015000000151000001520000000a00f100011d2a00c700000000001000b9addc000c00"
    "00acb600040000000001320000000001330000000001340000000001350000000001c1000000000003000b000000d14675f3"
    "6000ee0000000000000000000e0000000003fd509f0005014b0000014c0000014d0000014e0000018300222d333337333335"
    "2e353833332d303730373139362e323333332b3030302e3434362f00000182a7018d8d01d5d8ffa6ebe4a0ca01be00611100"
    "0000f70001000100f70500000000000000000400003a10"
)
# Traccar testDecode: Codec 8 Extended, two records at -33.9656016, 18.8357883 with no satellites (the last
# fix, repeated); the first made by IO 236 (alarm button) = 1, battery level 1 %.
TRACCAR_CODEC8E_SOS = bytes.fromhex(
    "00000000000000b98e0200000179555c7bf8010b3a1cfbebc142b00000000000000000ec000f000900f00000150000c80000"
    "450200710100740001070100fa0000ec01000500b500000018000000430d560044000000190000000100f100000000000000"
    "0000000179555c83c8010b3a1cfbebc142b0000000000000000185000f000900f00000150000c80000450200710100740001"
    "070100fa00018511000500b500000018000000430d560044000000190000000100f100000000000000000200003251"
)
# Traccar testDecode: Codec 16 (2-byte IO ids, a generation type byte), one record at -33.4379166,
# -70.64967 with 6 satellites.
TRACCAR_CODEC16 = bytes.fromhex(
    "000000000000009F100100000164D855401800D5E3B744EC11C762023B011A060000000007200A010000010500010600010D"
    "00010E00010F00011600011700011800011F001301010000010700000108000001090000010A0000010B0000010C00000110"
    "0000011100000112000001130000011400000115000001190000011A0000011B0000011C0000011D0000011E000003010200"
    "000000010300000000010400000000000100000D3B"
)
# Traccar testDecode: Codec 16, four records whose IO 113 comes in the 4-byte group (another meaning on
# that model than FMB's 1-byte battery level), so their battery stays unknown.
TRACCAR_CODEC16_MODEL_IO = bytes.fromhex(
    "00000000000003831004000001735ace37f80000e3b9331c71e290006900e211005100fd072e1600010100160300470300f0"
    "0100150400b20000c80000ef01009000004f00005101005201005300005538006e00006f00007a03007d00007f5600890000"
    "fd0200fe1f09004326b00044000000b5000b00b6000600427029001800540046015d00ce4ec10080000f0f00f10000515400"
    "cd007404ab00d80f5022a1005000000054005400000000005600015568005700000060005800000420006800001113006d30"
    "3330300071fffd8c85008700000020008800000002008a000155f5008b0000b86000000001735ace3ca80000e3b08a1c71dd"
    "29006900e311005100fd072e1600010100160300470300f00100150400b20000c80000ef01009000004f0000510100520100"
    "5300005537006e00006f00007a03007d00007f5600890000fd0200fe1d09004326ac0044000000b5000b00b600060042701f"
    "001800540046015d00ce4ec10080000f0f00f10000515400cd007404ab00d80f5022ce005000000054005400000000005600"
    "01556800570000006000580000041f006800001113006d303330300071fffd8c85008700000020008800000002008a000155"
    "f5008b0000b86000000001735ace3fc80000e3a7c01c71d7c2006900e311005100fd072e1600010100160300470300f00100"
    "150400b20000c80000ef01009000004f00005101005201005300005537006e00006f00007a03007d00007f5600890000fd02"
    "00fe2309004326ac0044000000b5000b00b6000600427015001800540046015e00ce4ec10080000f0f00f10000515400cd00"
    "7404ab00d80f5022e700500000005400540000000000560001556800570000006000580000041f006800001113006d303330"
    "300071fffd8c85008700000020008800000002008a000155f5008b0000b86000000001735ace3ffa0000e3a7c01c71d7c200"
    "6900e311005100fd072e1600010100160300470300f00100150400b20000c80000ef01009000004f00005101005201005300"
    "005537006e00006f00007a03007d00007f5600890000fd0300fe2309004326ac0044000000b5000b00b60006004270150018"
    "00540046015e00ce4ec10080000f0f00f10000515400cd007404ab00d80f5022e70050000000540054000000000056000155"
    "6800570000006000580000041f006800001113006d303330300071fffd8c85008700000020008800000002008a000155f500"
    "8b0000b86000040000eb85"
)
# Traccar testDecode: Codec 12 answers (text, then binary) and a Codec 13 packet (wiki's getinfo via Codec 13).
TRACCAR_CODEC12_TEXT = bytes.fromhex(
    "000000000000004f0c01060000004755555555777730362e343b30342e323b30302e303b30302e303b30302e303b30302e30"
    "3b30302e303b30302e303b30312e333b30302e303b31302e373b30302e303b5353530d0a010000e371"
)
TRACCAR_CODEC12_BINARY = bytes.fromhex("00000000000000100C010600000008010300010015D5C5010000D988")
TRACCAR_CODEC13 = bytes.fromhex("00000000000000170D01050000000F0000016C0A81C320676574696E666F0100006855")
# Traccar testDecode vectors whose CRC does not match their data (Traccar does not check it): a Codec 8
# packet with two IO ids changed, and a Codec 16 packet.
TRACCAR_BAD_CRC_CODEC8 = bytes.fromhex(
    "000000000000008c08010000013feb55ff74000f0ea850209a690000940000120000001e09FD01FE210300040016014703f0"
    "001504c8000c0900730a00460b00501300464306d7440000b5000bb60007422e9f180000cd0386ce000107c700000000f100"
    "00601a46000001344800000bb84900000bb84a00000bb84c00000000024e0000000000000000cf0000000000000000010000"
    "3fca"
)
# Traccar testDecode, commented "invalid length and checksum": a data length of 0.
TRACCAR_INVALID_LENGTH = bytes.fromhex(
    "0000000000000000080100000113fc208dff00209cca800f14f650006f00d60400040004030101150316030001460000015d000100000000"
)
# Traccar testDecode: GH3000's Codec 7, which solewatch does not decode.
TRACCAR_CODEC7 = bytes.fromhex(
    "000000000000003107024c61410b013f4231c2c141d0beb9003d000005006483ff4c6140eb013f4231c2c141d0beb9003d00"
    "0005006483ff02000041df"
)

AVL_VECTORS = [
    WIKI_CODEC8_1,
    WIKI_CODEC8_2,
    WIKI_CODEC8_3,
    WIKI_CODEC8E,
    TRACCAR_CODEC8,
    TRACCAR_CODEC8E_CRASH,
    TRACCAR_CODEC8E_SOS,
    TRACCAR_CODEC16,
    TRACCAR_CODEC16_MODEL_IO,
]


def logged_in() -> Session:
    session = Session()
    session.receive_data(WIKI_IMEI)
    login = session.next_event()
    assert isinstance(login, Login) and login.imei == IMEI
    assert session.accept_login(login.imei, int(time.time()), 0) == b"\x01"
    return session


def drain(session: Session) -> list[Any]:
    out: list[Any] = []
    while (event := session.next_event()) is not None:
        out.append(event)
    return out


def store_all(session: Session, events: list[Any]) -> bytes:
    """Acknowledge every telemetry event as stored, as the committer does; the replies released."""
    seqs = [event.seq for event in events if not isinstance(event, Reply | Login)]
    return session.acks(seqs, AckStatus.STORED)


def decode_whole(packet: bytes) -> tuple[list[Any], bytes]:
    session = logged_in()
    session.receive_data(packet)
    events = drain(session)
    return events, store_all(session, events)


# -- decoding real frames ---------------------------------------------------------------------------


def test_the_imei_preamble_logs_in_and_is_answered_01_or_00() -> None:
    session = Session()
    session.receive_data(WIKI_IMEI)
    assert session.next_event() == Login(0, IMEI, 0, b"")
    assert session.accept_login(IMEI, int(time.time()), 0) == b"\x01"
    assert session.state is SessionState.ONLINE

    refused = Session()
    refused.receive_data(WIKI_IMEI)
    assert isinstance(refused.next_event(), Login)
    reply = refused.reject_login(LoginStatus.UNKNOWN_DEVICE, int(time.time()), 0)
    assert (reply.data, reply.close, reply.end) == (b"\x00", True, SessionEnd.LOGIN_REFUSED)


def test_wiki_codec8_records_without_gps_data_are_heartbeats_answered_with_their_count() -> None:
    events, reply = decode_whole(WIKI_CODEC8_1)
    # 0x16B40D8EA30 ms = 2019-06-10T10:04:46Z; no IO 113, so the battery is unknown.
    assert events == [Heartbeat(stable_seq("hb", 0x16B40D8EA30), 1560161086, BATTERY_UNKNOWN, 0)]
    assert reply == bytes.fromhex("00000001")

    events, reply = decode_whole(WIKI_CODEC8_2)
    assert [(type(e), e.ts) for e in events] == [(Heartbeat, 1560161136)]
    assert reply == bytes.fromhex("00000001")

    events, reply = decode_whole(WIKI_CODEC8_3)
    assert [e.ts for e in events] == [1560160861, 1560160879]
    assert reply == bytes.fromhex("00000002")


def test_wiki_codec8_extended_is_decoded_with_its_two_byte_ids() -> None:
    events, reply = decode_whole(WIKI_CODEC8E)
    assert [(type(e), e.ts) for e in events] == [(Heartbeat, 1560166592)]
    assert reply == bytes.fromhex("00000001")


def test_traccar_codec8_position_fields_in_xsole_units() -> None:
    events, reply = decode_whole(TRACCAR_CODEC8)
    (position,) = events
    assert isinstance(position, Position)
    assert position.ts == 1546604839  # 0x16818D50058 ms
    assert (position.lat_e7, position.lon_e7) == (481523066, 163745183)  # 48.1523066 N, 16.3745183 E
    assert position.alt_m == 190
    assert position.speed_cms == kmh_to_cms(83) == 2306  # 83 km/h
    assert position.course_ddeg == 1980  # 198 degrees
    assert (position.sats, position.hdop_d, position.battery) == (15, 0, BATTERY_UNKNOWN)
    assert position.flags == FLAG_FIX_VALID
    assert reply == bytes.fromhex("00000001")


def test_traccar_codec16_is_decoded() -> None:
    events, reply = decode_whole(TRACCAR_CODEC16)
    (position,) = events
    assert isinstance(position, Position)
    assert (position.ts, position.lat_e7, position.lon_e7) == (1532637823, -334379166, -706496700)
    assert (position.alt_m, position.course_ddeg, position.sats, position.speed_cms) == (571, 2820, 6, 0)
    assert reply == bytes.fromhex("00000001")


def test_an_io_113_of_another_size_is_not_taken_for_a_battery_level() -> None:
    events, reply = decode_whole(TRACCAR_CODEC16_MODEL_IO)
    assert len(events) == 4
    assert all(isinstance(e, Position) and e.battery == BATTERY_UNKNOWN for e in events)
    assert reply == bytes.fromhex("00000004")


def test_crash_detection_and_unplug_raise_fall_and_tamper_but_a_crash_trace_does_not() -> None:
    events, reply = decode_whole(TRACCAR_CODEC8E_CRASH)
    alarms = [e for e in events if isinstance(e, Alarm)]
    assert [(a.kind, a.ts, a.battery) for a in alarms] == [
        (AlarmKind.FALL, 1660659283, 87),
        (AlarmKind.TAMPER, 1660659285, 77),
    ]
    assert all((a.lat_e7, a.lon_e7, a.flags) == (-337335583, -707196233, FLAG_FIX_VALID) for a in alarms)
    assert sum(isinstance(e, Position) for e in events) == 4
    assert reply == bytes.fromhex("00000004")


def test_the_alarm_button_raises_sos_at_the_last_fix_without_a_valid_fix() -> None:
    events, reply = decode_whole(TRACCAR_CODEC8E_SOS)
    position, alarm, _ = events
    assert isinstance(position, Position) and isinstance(alarm, Alarm)
    # No satellites: the coordinates are the last valid fix, sent again.
    assert (position.lat_e7, position.lon_e7, position.flags, position.battery) == (-339656016, 188357883, 0, 1)
    assert (alarm.kind, alarm.ts, alarm.lat_e7, alarm.lon_e7, alarm.flags) == (
        AlarmKind.SOS,
        1620634795,
        -339656016,
        188357883,
        0,
    )
    assert reply == bytes.fromhex("00000002")


def test_unplug_0_raises_nothing() -> None:
    events, _ = decode_whole(TRACCAR_CODEC8)  # carries IO 252 = 0
    assert not any(isinstance(e, Alarm) for e in events)


def test_a_resent_alarm_keeps_its_seq() -> None:
    first, _ = decode_whole(TRACCAR_CODEC8E_SOS)
    again, _ = decode_whole(TRACCAR_CODEC8E_SOS)
    assert [e for e in first if isinstance(e, Alarm)] == [e for e in again if isinstance(e, Alarm)]


def test_codec13_and_codec12_answers_with_no_command_pending_give_nothing_and_want_no_reply() -> None:
    for packet in (TRACCAR_CODEC13, TRACCAR_CODEC12_TEXT, TRACCAR_CODEC12_BINARY, WIKI_GETIO_ANSWER):
        session = logged_in()
        session.receive_data(packet)
        assert drain(session) == []
        assert (session.bad_frames, session.skipped_bytes, session.state) == (0, 0, SessionState.ONLINE)


def test_the_ping_byte_between_packets_is_taken_silently() -> None:
    session = logged_in()
    session.receive_data(b"\xff" + TRACCAR_CODEC8 + b"\xff\xff")
    events = drain(session)
    assert [type(e) for e in events] == [Position]
    assert (session.skipped_bytes, session.bad_frames) == (0, 0)


# -- hostile input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [TRACCAR_BAD_CRC_CODEC8, TRACCAR_CODEC7], ids=["bad-crc", "codec7"])
def test_a_bad_checksum_or_an_unsupported_codec_is_dropped_unanswered_and_the_next_packet_comes_through(
    bad: bytes,
) -> None:
    session = logged_in()
    session.receive_data(bad + TRACCAR_CODEC8)
    events = drain(session)
    assert [type(e) for e in events] == [Position]
    assert session.bad_frames == 1
    assert store_all(session, events) == bytes.fromhex("00000001")  # the good packet's reply only


def test_a_data_length_of_0_is_skipped_as_garbage() -> None:
    session = logged_in()
    session.receive_data(TRACCAR_INVALID_LENGTH + TRACCAR_CODEC8)
    assert [type(e) for e in drain(session)] == [Position]
    # Every byte of it skipped, but its 0xFF bytes, taken for the ping a device sends between packets.
    assert session.skipped_bytes == len(TRACCAR_INVALID_LENGTH) - TRACCAR_INVALID_LENGTH.count(0xFF) > 0
    assert session.bad_frames == 0


def test_a_length_past_the_limit_closes_the_connection() -> None:
    session = logged_in()
    session.receive_data(bytes(4) + (MAX_DATA_LENGTH + 1).to_bytes(4, "big") + bytes((CODEC_8,)))
    (reply,) = drain(session)
    assert isinstance(reply, Reply) and reply.close and reply.end is SessionEnd.BAD_FRAMING
    assert session.state is SessionState.CLOSED


def test_ten_bad_packets_in_a_row_close_the_connection() -> None:
    session = logged_in()
    session.receive_data(TRACCAR_BAD_CRC_CODEC8 * 10)
    (reply,) = drain(session)
    assert isinstance(reply, Reply) and reply.close and reply.end is SessionEnd.BAD_FRAMES
    assert session.bad_frames == 10


def test_record_counts_that_disagree_are_a_bad_packet() -> None:
    data = bytearray(TRACCAR_CODEC8[8:-4])
    data[-1] = 2  # the second count says 2, the first 1
    session = logged_in()
    session.receive_data(encode_packet(bytes(data)) + TRACCAR_CODEC8)
    assert [type(e) for e in drain(session)] == [Position]
    assert session.bad_frames == 1


def test_a_packet_cut_short_costs_only_itself() -> None:
    cut_short = TRACCAR_CODEC8E_CRASH[:100]  # its header is whole, its body and CRC are not
    session = logged_in()
    # Enough good packets behind it to fill the length it declared, so its CRC is found wrong.
    session.receive_data(cut_short + TRACCAR_CODEC8 * 20)
    events = drain(session)
    assert session.bad_frames == 1
    # The scan went on past its header: every good packet behind it came through.
    assert events == decode_whole(TRACCAR_CODEC8)[0] * 20
    assert store_all(session, events) == bytes.fromhex("00000001") * 20


def test_garbage_before_the_imei_is_skipped_and_counted() -> None:
    session = Session()
    session.receive_data(b"GET / HTTP/1.1\r\n\r\n" + WIKI_IMEI)
    login = session.next_event()
    assert isinstance(login, Login) and login.imei == IMEI
    assert session.skipped_bytes == len(b"GET / HTTP/1.1\r\n\r\n")


# -- the session's rules ----------------------------------------------------------------------------


def test_telemetry_before_the_login_closes_the_connection() -> None:
    session = Session()
    session.receive_data(TRACCAR_CODEC8)
    (reply,) = drain(session)
    assert isinstance(reply, Reply) and reply.close and reply.end is SessionEnd.FRAME_BEFORE_LOGIN
    assert reply.data == b""


def test_a_second_imei_on_one_connection_closes_it() -> None:
    session = logged_in()
    session.receive_data(WIKI_IMEI)
    (reply,) = drain(session)
    assert isinstance(reply, Reply) and reply.close and reply.end is SessionEnd.MALFORMED_LOGIN


def test_values_out_of_range_are_dropped_and_the_packet_still_answered() -> None:
    now_ms = int(time.time()) * 1000
    bad = Record(now_ms, 0, 10 * 10**7, 95 * 10**7, 0, 10, 9, 5, 0, {})  # latitude 95 degrees
    good = Record(now_ms, 0, 10 * 10**7, 45 * 10**7, 0, 10, 9, 5, 0, {})
    session = logged_in()
    session.receive_data(encode_packet(encode_records(CODEC_8, [bad])))
    (reply,) = drain(session)
    assert isinstance(reply, Reply) and not reply.close and reply.data == bytes.fromhex("00000001")
    assert session.rejected == 1

    session.receive_data(encode_packet(encode_records(CODEC_8, [bad, good])))
    events = drain(session)
    assert [e.lat_e7 for e in events] == [45 * 10**7]
    assert store_all(session, events) == bytes.fromhex("00000002")  # the count the device sent


def test_the_reply_waits_for_every_event_of_the_packet_and_busy_withholds_it() -> None:
    session = logged_in()
    session.receive_data(TRACCAR_CODEC8E_SOS + TRACCAR_CODEC8)
    events = drain(session)
    assert len(events) == 4  # position, alarm, position; position
    assert session.acks([events[0].seq], AckStatus.STORED) == b""
    assert session.acks([events[1].seq], AckStatus.STORED) == b""
    assert session.acks([events[2].seq], AckStatus.STORED) == bytes.fromhex("00000002")
    assert session.acks([events[3].seq], AckStatus.BUSY) == b""


# -- commands ---------------------------------------------------------------------------------------


def test_commands_are_codec12_bytes_and_unsupported_ones_none() -> None:
    session = logged_in()
    # getgps and cpureset as Codec 12 frames the device takes (CRC as in the wiki's getinfo example).
    assert session.command(7, CommandCode.LOCATE_NOW) == bytes.fromhex(
        "000000000000000e0c010500000006676574677073010000ccd7"
    )
    assert session.command(8, CommandCode.REBOOT) == bytes.fromhex(
        "00000000000000100c01050000000863707572657365740100007a75"
    )
    for code in (CommandCode.SET_INTERVAL, CommandCode.VIBRATE, CommandCode.ALARM_ACKNOWLEDGED):
        assert session.command(9, code, b"\x00\x3c" if code is CommandCode.SET_INTERVAL else b"") is None
    assert session.command(9, CommandCode.LOCATE_NOW, b"\x01") is None  # arguments it cannot carry


def test_codec12_framing_matches_the_documented_command_bytes() -> None:
    from shared.protocols.teltonika import codec12

    assert codec12.encode_message(codec12.TYPE_COMMAND, b"getinfo") == WIKI_GETINFO_COMMAND
    assert codec12.encode_message(codec12.TYPE_COMMAND, b"setdigout 11") == TRACCAR_SETDIGOUT


def test_answers_are_matched_to_the_commands_in_the_order_they_were_sent() -> None:
    session = logged_in()
    assert session.command(7, CommandCode.LOCATE_NOW) is not None
    assert session.command(9, CommandCode.REBOOT) is not None
    session.receive_data(WIKI_GETIO_ANSWER + TRACCAR_CODEC12_TEXT + TRACCAR_CODEC12_BINARY)
    assert drain(session) == [
        CommandResult(7, 7, CommandStatus.DONE),
        CommandResult(9, 9, CommandStatus.DONE),
    ]  # and the third answer, with no command left, gives nothing


# -- the device side --------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", [CODEC_8, CODEC_8_EXTENDED, CODEC_16], ids=["codec8", "codec8e", "codec16"])
def test_device_round_trip_of_every_packet_kind(codec: int) -> None:
    device = Device(IMEI, codec=codec)
    session = Session()
    now = int(time.time())

    session.receive_data(device.login())
    assert device.login() == WIKI_IMEI
    login = session.next_event()
    assert isinstance(login, Login) and login.imei == IMEI
    assert device.feed(session.accept_login(IMEI, now, 0)) == [FromServer("login", b"\x01", accepted=True)]

    session.receive_data(
        device.position(
            ts=now, lat_e7=436163000, lon_e7=70553000, speed_cms=kmh_to_cms(36), course_ddeg=2705, battery=87
        )
    )
    (position,) = drain(session)
    assert isinstance(position, Position)
    assert (position.ts, position.lat_e7, position.lon_e7, position.speed_cms) == (now, 436163000, 70553000, 1000)
    assert (position.course_ddeg, position.battery, position.flags) == (2700, 87, FLAG_FIX_VALID)  # whole degrees
    assert device.feed(store_all(session, [position])) == [FromServer("ack", bytes.fromhex("00000001"))]

    for kind in (AlarmKind.SOS, AlarmKind.FALL, AlarmKind.TAMPER):
        session.receive_data(device.alarm(kind, ts=now, lat_e7=436163000, lon_e7=70553000, battery=50))
        events = drain(session)
        assert [type(e) for e in events] == [Position, Alarm]
        alarm = events[1]
        assert isinstance(alarm, Alarm)
        assert (alarm.kind, alarm.ts, alarm.lat_e7, alarm.battery) == (kind, now, 436163000, 50)
        assert device.feed(store_all(session, events)) == [FromServer("ack", bytes.fromhex("00000001"))]
    with pytest.raises(ValueError):
        device.alarm(AlarmKind.LOW_BATTERY, ts=now, lat_e7=0, lon_e7=0, battery=5)

    session.receive_data(device.heartbeat(ts=now, battery=42))
    heartbeat = drain(session)
    assert heartbeat == [Heartbeat(stable_seq("hb", now * 1000), now, 42, 0)]
    assert device.feed(store_all(session, heartbeat)) == [FromServer("ack", bytes.fromhex("00000001"))]

    for seq, code in ((11, CommandCode.LOCATE_NOW), (12, CommandCode.REBOOT)):
        command = session.command(seq, code)
        assert command is not None
        # Fed in two pieces: the device waits for the whole packet.
        assert device.feed(command[:5]) == []
        (received,) = device.feed(command[5:])
        assert (received.kind, received.command) == ("command", code)
        session.receive_data(device.answer(received))
        assert drain(session) == [CommandResult(seq, seq, CommandStatus.DONE)]


def test_the_device_reads_a_refused_login() -> None:
    device = Device(IMEI)
    device.login()
    assert device.feed(b"\x00") == [FromServer("login", b"\x00", accepted=False)]

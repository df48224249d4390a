"""The GT06 codec (shared/protocols/gt06): real frames, exact replies, the session's rules.

Vectors come from two sources, cited at each:
- "Traccar test" = traccar/traccar src/test/java/org/traccar/protocol/Gt06ProtocolDecoderTest.java,
  testDecode (or Gt06ProtocolEncoderTest.java, testEncode), Apache-2.0;
- "JM-VL03 doc" = Concox's "GPS Tracker Communication Protocol JM-VL03" v1.1.2, as transcribed in
  github.com/fcode09/jimi-vl103m docs/README_VL03_Protocol.md; "GT06 doc" = Concox's GT06 protocol
  document (its login and status examples, quoted in the same form by many GT06 servers).
"""

from __future__ import annotations

import calendar
import time

import pytest

from shared.protocols.gt06 import Device, Session
from shared.protocols.gt06.framing import crc_itu, encode_packet
from shared.protocols.gt06.session import online_command
from shared.protocols.tracker import BATTERY_UNKNOWN
from shared.protocols.xsole.constants import (
    FLAG_BUFFERED,
    FLAG_FIX_VALID,
    AckStatus,
    AlarmKind,
    CommandCode,
    CommandStatus,
    LoginStatus,
)
from shared.protocols.xsole.messages import Alarm, CommandResult, DeviceEvent, Heartbeat, Login, Position
from shared.protocols.xsole.session import Reply, SessionEnd, SessionState

NOW = calendar.timegm((2026, 12, 7, 12, 0, 0))

# GT06 doc and Traccar test: the login of IMEI 123456789012345, serial 1, and its documented answer.
DOC_LOGIN = "78780D01012345678901234500018CDD0D0A"
DOC_LOGIN_REPLY = "787805010001D9DC0D0A"
# Traccar test (issue #604's device): the long login, time zone word 0x190a = GMT-4:00.
LOGIN_GMT_MINUS_4 = "787811010864717003664467100f190a0002c6d20d0a"
# JM-VL03 doc, 1. Login Packet: the long login, zone word 0x3201 = GMT+8:00, serial 5; and its answer.
VL03_LOGIN = "78781101075253367890024270003201000512790D0A"
VL03_LOGIN_REPLY = "7878050100059FF80D0A"
# Traccar test: a 0x12 location checked to 2015-10-20 14:21:11, 54.94535, 24.01762, valid.
LOCATION_0X12 = "78781f120f0a140e150bc505e51e780293a9e800540000f601006e0055da00035f240d0a"
# JM-VL03 doc, 3. GPS Location Packet (0x22): 2015-12-29 02:51:05 UTC, re-uploaded (byte 0x01).
LOCATION_0X22 = "787822220F0C1D023305C9027AC8180C46586000140001CC00287D001F71000001000820860D0A"
# JM-VL03 doc, 5. Alarm Packet (0x26): alert 0x13 (tamper), voltage level 4.
ALARM_0X26_TAMPER = "787825260F0C1D030B26C9027AC8180C4658600004000901CC00287D001F718004041302000C472A0D0A"
# Traccar test (expects ALARM_SOS): a 0x16 whose alarm byte is 0x01 (a cell block with a 4-byte cell id).
ALARM_0X16_SOS = "787826161709130f3a2dcc02c55f2a089f9af9005c210901360481fe066d9b03413e420102035f92fe0d0a"
# Traccar test (expects ALARM_SOS): a 0x16 with no cell length byte whose terminal bits 3-5 say SOS.
ALARM_0X16_SOS_STATUS_BITS = "7878241617070a150e24ca01fba0040780e177005c0001720253360027db6204e40400004bf1e90d0a"
# Traccar test (expects ALARM_REMOVING): terminal bits 3-5 = 7.
ALARM_0X16_REMOVED = "7878251613020C12141AC5027951430C2A16F60014000900000000001A00007C550300020002F1E70D0A"
# Traccar test (expects ALARM_TAMPERING): a 4G multi-fence alarm 0xA4, alert 0x13, then a fence number.
ALARM_0XA4_TAMPER = (
    "78782da41a0509160203cf05be31f80c306530001c0010012ed000007ef40000000006428b074205041302ff0009389c0d0a"
)
# Traccar test (expects ALARM_TAMPERING): a 4G cell-only alarm 0xA5: no GPS, no time.
ALARM_0XA5_TAMPER = "787819a5012ed0000075df000000000098661502050413000019a12b0d0a"
# JM-VL03 doc, 2. Heartbeat Packet: voltage level 4, GSM level 4, serial 0x000F.
HEARTBEAT = "78780A134004040001000FDCEE0D0A"
# JM-VL03 doc, 8. Time Calibration Packet: the request (serial 6) and the answer for 2015-12-29 00:00:21.
TIME_REQUEST = "7878058A000688290D0A"
TIME_REPLY = "78780B8A0F0C1D0000150006F0860D0A"
# Traccar test: a device's answer (0x15) to a command Traccar sent with server flag 0.
ANSWER_FLAG_ZERO = (
    "78782d152500000000437574206f666620746865206675656c20737570706c793a2053756363657373210002013b898a0d0a"
)
# Traccar test (expects a position): the universal answer 0x21 with a WHERE# position, server flag 0.
WHERE_ANSWER = (
    "7979007121000000000143757272656e7420706f736974696f6e214c61743a4e35342e3733393333322c4c6f6e3a4532"
    "352e3237333237302c436f757273653a3132362e35332c53706565643a302e303030302c4461746554696d653a323031"
    "372d30352d3236202031303a32373a3437000bbee30d0a"
)
# Traccar test: the GT06 doc's own 0x12 example, whose CRC (0x8081) does not match its bytes.
BAD_CRC_LOCATION = "78781F120B081D112E10CC027AC7EB0C46584900148F01CC00287D001FB8000380810D0A"
# Traccar test: the CRC-less Wi-Fi form (length byte 0), which solewatch does not take.
WIFI_NO_CRC = "787800691709261259400700cc0400d376714600d37a3d5000d37a3c5000d393505a00d3765d5a00d376735a00d32e6b640d0a"


def h(text: str) -> bytes:
    return bytes.fromhex(text)


class Link:
    """Drives a session as the listener does: feed, drain, accept the login, acknowledge what comes out."""

    def __init__(self, *, clock: float = NOW, status: AckStatus = AckStatus.STORED) -> None:
        self.session = Session(clock=lambda: clock)
        self.status = status
        self.events: list[DeviceEvent] = []
        self.sent = bytearray()
        self.ends: list[Reply] = []

    def feed(self, data: bytes, *, ack: bool = True) -> list[DeviceEvent]:
        self.session.receive_data(data)
        new: list[DeviceEvent] = []
        while (event := self.session.next_event()) is not None:
            if isinstance(event, Login):
                new.append(event)
                self.sent += self.session.accept_login(event.imei, int(time.time()), 0)
            elif isinstance(event, Reply):
                self.sent += event.data
                if event.close:
                    self.ends.append(event)
            else:
                new.append(event)
                if ack:
                    self.sent += self.session.acks([event.seq], self.status)
        self.events += new
        return new

    def take_sent(self) -> bytes:
        out, self.sent = bytes(self.sent), bytearray()
        return out


def logged_in(login: str = DOC_LOGIN, *, clock: float = NOW, status: AckStatus = AckStatus.STORED) -> Link:
    link = Link(clock=clock, status=status)
    link.feed(h(login))
    link.take_sent()
    return link


# -- CRC and packet building against documented bytes ----------------------------------------


def test_crc_itu_is_crc16_x25() -> None:
    assert crc_itu(b"123456789") == 0x906E  # the catalogued check value of CRC-16/X-25
    assert crc_itu(h("05010001")) == 0xD9DC  # GT06 doc: the login answer's CRC


@pytest.mark.parametrize(
    ("protocol", "serial", "expected"),
    [
        (0x01, 0x0001, DOC_LOGIN_REPLY),  # GT06 doc: login answer
        (0x01, 0x0005, VL03_LOGIN_REPLY),  # JM-VL03 doc: login answer
        (0x13, 0x0011, "787805130011F9700D0A"),  # GT06 doc: status answer
        (0x13, 0x0100, "787805130100E1A00D0A"),  # JM-VL03 doc: heartbeat answer
        (0x26, 0x001C, "78780526001C9D860D0A"),  # JM-VL03 doc: alarm answer
    ],
)
def test_the_echo_reply_is_byte_for_byte_the_documented_one(protocol: int, serial: int, expected: str) -> None:
    assert encode_packet(protocol, b"", serial) == h(expected)


def test_online_commands_are_byte_for_byte_the_documented_ones() -> None:
    # Traccar Gt06ProtocolEncoderTest.testEncode: engine stop, server flag 0, serial 0.
    assert online_command(0, "Relay,1#", 0) == h("787812800c0000000052656c61792c312300009dee0d0a")
    # JM-VL03 doc, 7. Online Command: "sos#", server flag 0, serial 1.
    assert online_command(0, "sos#", 1) == h("78780E800800000000736F732300016D6A0D0A")


# -- decoding real frames ---------------------------------------------------------------------


def test_login_gives_the_imei_and_is_answered_with_its_serial_only_once_accepted() -> None:
    session = Session()
    session.receive_data(h(DOC_LOGIN))
    login = session.next_event()
    assert isinstance(login, Login) and login.imei == "123456789012345"
    assert session.next_event() is None  # paused until the verdict
    assert session.accept_login(login.imei, NOW, 0) == h(DOC_LOGIN_REPLY)
    assert session.state is SessionState.ONLINE


def test_a_refused_login_gets_no_answer_and_closes() -> None:
    session = Session()
    session.receive_data(h(VL03_LOGIN))
    login = session.next_event()
    assert isinstance(login, Login) and login.imei == "752533678900242"
    reply = session.reject_login(LoginStatus.UNKNOWN_DEVICE, NOW, 0)
    assert reply.close and reply.data == b"" and reply.end is SessionEnd.LOGIN_REFUSED


def test_a_0x12_location_decodes_to_the_documented_precision() -> None:
    link = logged_in()
    [position] = link.feed(h(LOCATION_0X12))
    assert isinstance(position, Position)
    assert position.ts == calendar.timegm((2015, 10, 20, 14, 21, 11))
    assert abs(position.lat_e7 - 549_453_500) < 100 and abs(position.lon_e7 - 240_176_200) < 100
    # to the wire's own unit, 1/1,800,000 degree: 0x05e51e78 and 0x0293a9e8
    assert abs(position.lat_e7 - 0x05E51E78 * 50 / 9) <= 0.5 and abs(position.lon_e7 - 0x0293A9E8 * 50 / 9) <= 0.5
    assert (position.speed_cms, position.course_ddeg, position.sats) == (0, 0, 5)
    assert position.flags == FLAG_FIX_VALID and position.battery == BATTERY_UNKNOWN
    assert (position.alt_m, position.hdop_d) == (0, 0)
    assert link.take_sent() == encode_packet(0x12, b"", 0x0003)


def test_a_0x22_location_is_utc_and_its_reupload_byte_marks_it_buffered() -> None:
    link = logged_in(VL03_LOGIN)  # declares GMT+8, which the UTC types ignore
    [position] = link.feed(h(LOCATION_0X22))
    assert isinstance(position, Position)
    assert position.ts == calendar.timegm((2015, 12, 29, 2, 51, 5))
    assert abs(position.lat_e7 - 231_116_933) <= 1 and abs(position.lon_e7 - 1_144_092_978) <= 1
    assert position.flags == FLAG_FIX_VALID | FLAG_BUFFERED
    assert link.take_sent() == encode_packet(0x22, b"", 0x0008)


def test_the_older_types_carry_the_clock_of_the_zone_the_login_declares() -> None:
    link = logged_in(LOGIN_GMT_MINUS_4)
    [position] = link.feed(h(LOCATION_0X12))
    assert isinstance(position, Position)
    assert position.ts == calendar.timegm((2015, 10, 20, 18, 21, 11))  # 14:21:11 at GMT-4


def test_a_course_with_speed_and_southern_western_hemispheres() -> None:
    device_fix = Device("123456789012345").position(
        ts=NOW, lat_e7=-336_000_000, lon_e7=-706_000_000, speed_cms=1389, course_ddeg=2706, battery=50
    )
    link = logged_in()
    [position] = link.feed(device_fix)
    assert isinstance(position, Position)
    assert abs(position.lat_e7 + 336_000_000) <= 3 and abs(position.lon_e7 + 706_000_000) <= 3
    assert position.speed_cms == round(50 * 100 / 3.6)  # 50 km/h, the wire's whole km/h
    assert position.course_ddeg == 2710  # whole degrees on the wire


def test_an_alarm_packet_is_a_position_and_an_alarm_with_the_battery_level() -> None:
    link = logged_in()
    events = link.feed(h(ALARM_0X26_TAMPER))
    position, alarm = events
    assert isinstance(position, Position) and isinstance(alarm, Alarm)
    assert alarm.kind == AlarmKind.TAMPER
    assert alarm.ts == position.ts == calendar.timegm((2015, 12, 29, 3, 11, 38))
    assert (alarm.lat_e7, alarm.lon_e7) == (position.lat_e7, position.lon_e7)
    assert alarm.battery == position.battery == 66  # voltage level 4 of 6
    assert link.take_sent() == encode_packet(0x26, b"", 0x000C)


@pytest.mark.parametrize(
    ("vector", "kind"),
    [
        (ALARM_0X16_SOS, AlarmKind.SOS),
        (ALARM_0X16_SOS_STATUS_BITS, AlarmKind.SOS),
        (ALARM_0X16_REMOVED, AlarmKind.TAMPER),
        (ALARM_0XA4_TAMPER, AlarmKind.TAMPER),
    ],
)
def test_traccars_alarm_vectors_map_to_their_kinds(vector: str, kind: AlarmKind) -> None:
    events = logged_in().feed(h(vector))
    assert [e.kind for e in events if isinstance(e, Alarm)] == [kind]
    assert sum(isinstance(e, Position) for e in events) == 1


def test_a_cell_only_alarm_has_no_fix_and_the_receive_time() -> None:
    [alarm] = logged_in().feed(h(ALARM_0XA5_TAMPER))
    assert isinstance(alarm, Alarm)
    assert (alarm.kind, alarm.ts, alarm.lat_e7, alarm.lon_e7, alarm.flags) == (AlarmKind.TAMPER, NOW, 0, 0, 0)
    assert alarm.battery == 83  # voltage level 5


def test_a_resent_alarm_keeps_its_seq_though_its_serial_changed() -> None:
    device = Device("123456789012345")
    first = device.alarm(AlarmKind.SOS, ts=NOW, lat_e7=1, lon_e7=2, battery=50)
    again = device.alarm(AlarmKind.SOS, ts=NOW, lat_e7=1, lon_e7=2, battery=50)
    assert first != again  # a new serial
    alarms = [e for e in logged_in().feed(first + again) if isinstance(e, Alarm)]
    assert len(alarms) == 2 and alarms[0] == alarms[1]


def test_a_heartbeat_has_the_battery_and_the_receive_time() -> None:
    link = logged_in()
    [heartbeat] = link.feed(h(HEARTBEAT))
    assert heartbeat == Heartbeat(0x000F, NOW, 66, 0)
    assert link.take_sent() == encode_packet(0x13, b"", 0x000F)


def test_a_time_request_is_answered_with_the_utc_time() -> None:
    link = logged_in(clock=calendar.timegm((2015, 12, 29, 0, 0, 21)))
    assert link.feed(h(TIME_REQUEST)) == []
    assert link.take_sent() == h(TIME_REPLY)


def test_an_answer_to_a_command_not_ours_is_acknowledged_without_a_result() -> None:
    link = logged_in()
    assert link.feed(h(ANSWER_FLAG_ZERO)) == []
    assert link.take_sent() == encode_packet(0x15, b"", 0x013B)


def test_the_answer_to_where_is_a_position() -> None:
    link = logged_in()
    [position] = link.feed(h(WHERE_ANSWER))  # flag 0: no command of ours, so no CommandResult
    assert isinstance(position, Position)
    assert position.ts == calendar.timegm((2017, 5, 26, 10, 27, 47))
    assert (position.lat_e7, position.lon_e7) == (547_393_320, 252_732_700)
    assert (position.course_ddeg, position.speed_cms, position.flags) == (1265, 0, FLAG_FIX_VALID)
    assert link.take_sent() == b""  # the long answer is not acknowledged


# -- commands ---------------------------------------------------------------------------------


def test_locate_now_and_reboot_are_online_commands_the_others_unsupported() -> None:
    session = Session()
    assert session.command(7, CommandCode.LOCATE_NOW) == online_command(0x5357_0007, "WHERE#", 7)
    assert session.command(8, CommandCode.REBOOT) == online_command(0x5357_0008, "RESET#", 8)
    for code in (CommandCode.SET_INTERVAL, CommandCode.VIBRATE, CommandCode.ALARM_ACKNOWLEDGED):
        assert session.command(9, code, b"\x00\x3c" if code is CommandCode.SET_INTERVAL else b"") is None


@pytest.mark.parametrize("long", [False, True])
def test_a_command_answer_names_the_command_by_its_server_flag(long: bool) -> None:
    link = logged_in()
    command = link.session.command(0x1234, CommandCode.REBOOT)
    assert command is not None
    flag = command[5:9]
    if long:  # JM-VL03 doc, the universal answer 0x21: flag, encoding 1 (ASCII), text; not acknowledged
        answer = encode_packet(0x21, flag + b"\x01OK!", 0x0042, long=True)
    else:  # the classic answer 0x15: length, flag, text, language
        answer = encode_packet(0x15, bytes((4 + 3,)) + flag + b"OK!" + b"\x00\x02", 0x0042)
    assert link.feed(answer) == [CommandResult(0x0042, 0x1234, CommandStatus.DONE)]
    assert link.take_sent() == (b"" if long else encode_packet(0x15, b"", 0x0042))


# -- the session's rules ----------------------------------------------------------------------


def test_telemetry_before_the_login_closes_the_connection() -> None:
    link = Link()
    assert link.feed(h(LOCATION_0X12)) == []
    assert link.ends[0].end is SessionEnd.FRAME_BEFORE_LOGIN
    assert link.session.state is SessionState.CLOSED and link.sent == b""


def test_a_second_login_on_one_connection_closes_it() -> None:
    link = logged_in()
    link.feed(h(DOC_LOGIN))
    assert link.ends[0].end is SessionEnd.MALFORMED_LOGIN


def test_a_value_out_of_range_is_dropped_and_its_packet_still_answered() -> None:
    # The course is 10 bits on the wire: 1000 degrees frames fine and is out of range.
    content = bytearray(h(LOCATION_0X12)[4:-6])
    content[16:18] = (0x1000 | 1000).to_bytes(2, "big")
    link = logged_in()
    assert link.feed(encode_packet(0x12, bytes(content), 0x0077)) == []
    assert link.session.rejected == 1
    assert link.take_sent() == encode_packet(0x12, b"", 0x0077)


def test_a_packet_with_no_date_is_counted_and_answered() -> None:
    content = bytearray(h(LOCATION_0X12)[4:-6])
    content[0:6] = bytes(6)  # an unset clock: month 0
    link = logged_in()
    assert link.feed(encode_packet(0x12, bytes(content), 0x0078)) == []
    assert link.session.rejected == 1
    assert link.take_sent() == encode_packet(0x12, b"", 0x0078)


def test_the_reply_waits_until_every_event_of_its_packet_is_acknowledged() -> None:
    link = logged_in()
    position, alarm = link.feed(h(ALARM_0X26_TAMPER), ack=False)
    assert link.sent == b""
    assert link.session.acks([position.seq], AckStatus.STORED) == b""
    assert link.session.acks([alarm.seq], AckStatus.STORED) == encode_packet(0x26, b"", 0x000C)


def test_busy_withholds_the_reply_so_the_device_resends() -> None:
    link = logged_in(status=AckStatus.BUSY)
    assert len(link.feed(h(LOCATION_0X22))) == 1
    assert link.take_sent() == b""


# -- bad input --------------------------------------------------------------------------------


def test_a_bad_crc_is_counted_unanswered_and_the_next_packet_still_decodes() -> None:
    link = logged_in()
    assert link.feed(h(BAD_CRC_LOCATION)) == []
    assert link.session.bad_frames == 1 and link.sent == b""
    assert len(link.feed(h(LOCATION_0X12))) == 1


def test_ten_bad_packets_in_a_row_close() -> None:
    link = logged_in()
    link.feed(h(BAD_CRC_LOCATION) * 10)
    assert link.ends[0].end is SessionEnd.BAD_FRAMES
    assert link.session.bad_frames == 10


def test_a_long_length_past_the_limit_closes() -> None:
    link = logged_in()
    link.feed(h("7979ffff22") + bytes(10))
    assert link.ends[0].end is SessionEnd.BAD_FRAMING and link.session.state is SessionState.CLOSED


def test_garbage_and_crc_less_forms_are_skipped_up_to_the_next_packet() -> None:
    link = logged_in()
    garbage = b"\x00\x78hello\x79\r\n" + h(WIFI_NO_CRC)
    [position] = link.feed(garbage + h(LOCATION_0X12))
    assert isinstance(position, Position)
    assert link.session.skipped_bytes >= len(garbage) - 4  # minus start bits re-examined as packets
    assert link.session.bad_frames == 0


def test_a_false_start_does_not_hold_back_the_login_after_it() -> None:
    # Noise announcing a 255-byte packet, then the login: the device waits for its answer.
    link = Link()
    [login] = link.feed(b"\x78\x78\xff\x01" + h(DOC_LOGIN))
    assert isinstance(login, Login) and link.take_sent() == h(DOC_LOGIN_REPLY)
    assert link.session.skipped_bytes == 4


def test_a_partial_packet_waits_for_the_rest() -> None:
    link = logged_in()
    assert link.feed(h(LOCATION_0X12)[:-1]) == []
    assert link.session.skipped_bytes == 0 and link.session.bad_frames == 0
    assert len(link.feed(h(LOCATION_0X12)[-1:])) == 1


def test_a_known_type_cut_short_is_a_bad_packet() -> None:
    link = logged_in()
    assert link.feed(encode_packet(0x12, b"\x0f\x0a", 0x0001)) == []  # a location of two bytes
    assert link.session.bad_frames == 1 and link.sent == b""


def test_a_login_that_is_not_bcd_is_a_bad_packet() -> None:
    link = Link()
    link.feed(encode_packet(0x01, h("0123456789abcdef"), 1))
    assert link.session.state is SessionState.AWAITING_LOGIN and link.session.bad_frames == 1

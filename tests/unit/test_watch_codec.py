"""The watch protocol's codec (shared/protocols/watch): real frames decoded, the replies a watch expects,
the session's rules and a watch's side.

Vectors come from two sources, named on each:
- "4P" : the manufacturer's "Beesure GPS SeTracker Server Protocol" (4p-touch.com, revision of 2025-08-02);
- "T/<Test>.<method>" : Traccar's src/test/java/org/traccar/protocol/<Test>.java (Apache-2.0), commit 9e5c458.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from shared.protocols.tracker import BATTERY_UNKNOWN, FromServer, kmh_to_cms
from shared.protocols.watch import Device, Session
from shared.protocols.watch.framing import MAX_PACKET_BYTES
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

NOW = 1767225600  # 2026-01-01T00:00:00Z, the clock the heartbeats are dated by


@dataclass
class Run:
    """What a listener sees driving a session: events stored, bytes sent, whether it closed."""

    logins: list[Login] = field(default_factory=list)
    events: list[DeviceEvent] = field(default_factory=list)
    sent: bytearray = field(default_factory=bytearray)
    end: SessionEnd | None = None


def drive(session: Session, data: bytes, run: Run | None = None, *, status: AckStatus = AckStatus.STORED) -> Run:
    """Feed `data`, drain the session as the listener does (accepting every login) and acknowledge
    every event handed out, one packet's worth at a time."""
    run = run or Run()
    session.receive_data(data)
    while True:
        event = session.next_event()
        if event is None:
            break
        if isinstance(event, Login):
            run.logins.append(event)
            run.sent += session.accept_login(event.imei, int(time.time()), 0)
        elif isinstance(event, Reply):
            run.sent += event.data
            if event.close:
                run.end = event.end
                break
        else:
            run.events.append(event)
            run.sent += session.acks([event.seq], status)
    return run


def new_session() -> Session:
    return Session(clock=lambda: NOW)


def fields_of(event: DeviceEvent) -> tuple[object, ...]:
    """An event without its seq (drawn from its content)."""
    return tuple(event)[1:]  # type: ignore[arg-type]  # telemetry events are NamedTuples


# -- real frames decoded ---------------------------------------------------------------------

# 4P §I.2 "Position data (UD string)": GMT date and time, 6 satellites, battery 60%.
DOC_UD = (
    b"[3G*8800000015*00CD*UD,180916,025723,A,22.570733,N,113.8626083,E,0.00,249.5,0.0,6,100,60,0,0,00000010,7,255,"
    b"460,1,9529,21809,158,9529,63555,133,9529, 63554,129,9529,21405,126,9529,21242,124,9529,21151,120,9529,63556,"
    b"119,0,40.7]"
)
# 4P §I.3 "Blind spot Data Supplements": a position kept while offline, sent late.
DOC_UD2 = (
    b"[3G*8800000015*00D0*UD2,180916,064032,A,22.570512,N,113.8623267,E,0.00,154.8,0.0,11,100,100,0,0,00000010,7,"
    b"255,460,1,9529,21809,157,9529,21405,131,9529,63555,130,9529,21242,129,9529,63554,126,9529,63556,120,9529,21151,"
    b"113,0,12.2]"
)
# 4P §I.4 "Alarm data report": status 00100018, bit 20 (watch taken off) and states 3 and 4.
DOC_AL = (
    b"[3G*8800000015*00CD*AL,180916,064153,A,22.570512,N,113.8623267,E,0.00,154.8,0.0,11,100,100,0,0,00100018,7,0,"
    b"460,1,9529,21809,155,9529,21242,132,9529,21405,131,9529,63554,131,9529,63555,130,9529,63556,118,9529,21869,116,"
    b"0,12.4]"
)
# T/WatchProtocolDecoderTest.testDecode, checked there as 2014-04-22 13:46:52, valid, 22.57171, 113.86140.
T_UD = (
    b"[SG*8800000015*0087*UD,220414,134652,A,22.571707,N,113.8613968,E,0.1,0.0,100,7,60,90,1000,50,0000,4,1,460,0,"
    b"9360,4082,131,9360,4092,148,9360,4091,143,9360,4153,141]"
)
# T/WatchProtocolDecoderTest.testDecode, checked there as 2016-07-21 23:16:01, invalid, -33.48037, -70.76307:
# a signed number beside N and E.
T_UD2_SIGNED = (
    b"[3G*6105117105*008D*UD2,210716,231601,V,-33.480366,N,-70.7630692,E,0.00,0.0,0.0,0,100,34,0,0,00000000,3,255,"
    b"730,2,29731,54315,167,29731,54316,162,29731,54317,145]"
)
# T/WatchProtocolDecoderTest.testDecode: west longitude with a leading zero, 0.926 km/h, empty cell fields.
T_UD_WEST = (
    b"[SG*9059056143*0053*UD,251021,223408,A,41.46500,N,081.53128,W,0.926,000,0,00,70,70,0,50,00000000,0,1,,,,00]"
)
# T/WatchProtocolDecoderTest.testDecode: a 4G watch (UD_LTE) with WiFi access points.
T_UD_LTE = (
    b"[3G*2104326058*00E9*UD_LTE,300621,135101,A,32.162652,N,34.888748,E,30.84,265.158,65.621,18,100,83,0,0,00000000,"
    b"1,1,425,01,10223,8012811,100,3,ES4104,22:74:1d:39:64:ff,-46,metropoline-wifi,a8:3f:a1:e0:66:ba,-89,Egged.co.il,"
    b"00:0c:42:51:cf:cd,-81,1.7055488]"
)
# T/WatchProtocolDecoderTest.testDecode, checked there as ALARM_SOS (status bit 16).
T_AL_SOS = b"[3G*6907919734*003e*AL_LTE,170525,214118,V,0,N,0,E,0,0,0,0,0,22,0,0,00010000,0,0,0]"
# T/WatchProtocolDecoderTest.testDecode, checked there as ALARM_REMOVING (bit 20): a model with a packet index.
T_AL_INDEXED = (
    b"[ZJ*689466020014198*0003*0113*AL,221121,085515,V,00.000000,N,000.000000,E,0,0,0,0,0,44,0,0,00100000,1,255,460,0,"
    b"16399,234887445,0,6,WIFI00,68:77:24:1b:e7:a7,-59,WIFI01,68:77:24:1b:e3:30,-75,WIFI02,68:77:24:1b:e3:27,-75,"
    b"WIFI03,00:41:d2:c0:f2:f1,-76,WIFI04,00:41:d2:c0:f2:f0,-77,WIFI05,68:77:24:1b:e3:d8,-82]"
)
# T/WatchProtocolDecoderTest.testDecode: status 00200010, bit 21, a fall.
T_AL_FALL = (
    b"[3G*8308373902*0080*AL,230817,095346,A,47.083950,N,15.4821850,E,7.60,273.8,0.0,4,15,44,0,0,00200010,2,255,232,"
    b"1,7605,42530,118,7605,58036,119,0,65.8]"
)
# T/WatchProtocolDecoderTest.testDecode: an AL flagged by the low-battery state bit alone (status 0001).
T_AL_LOW_BATTERY = (
    b"[SG*8800000015*0087*AL,220414,134652,A,22.571707,N,113.8613968,E,0.1,0.0,100,7,60,90,1000,50,0001,4,1,460,0,"
    b"9360,4082,131,9360,4092,148,9360,4091,143,9360,4153,141]"
)
# T/WatchProtocolDecoderTest.testDecode: a custom alarm keyword, a 15-digit id, status 00100008 (bit 20).
T_ALCUSTOMER = (
    b"[3G*358839237678820*0122*ALCUSTOMER1,251120,081821,V,0.0,N,0.0,E,2.58,317.462,35.147,14,100,2,11089,0,00100008,"
    b"1,1,460,01,42308,101992452,100,5,shizhou1,44:56:e2:03:ea:2a,-69,FART3,30:0d:9e:bb:fa:4d,-70,ZKY-A209,"
    b"88:c3:97:c1:f4:7f,-73,ChinaNet-HNeD,e8:84:c6:21:7c:dc,-77,,30:45:96:10:14:5d,-79,1.2035439]"
)
# T/WatchProtocolDecoderTest.testDecode: an AL with no alarm bit (Traccar calls it a general alarm).
T_AL_NO_BIT = (
    b"[SG*9051004074*0058*AL,120117,145602,V,40.058413,N,76.336618,W,11.519,188,99,00,01,80,0,50,00000000,0,1,0,0,,10]"
)
# T/WatchFrameDecoderTest.testDecode: a WiFi name holding brackets, "[LG_Wall-Mount A/C]e725", inside a UD.
T_UD_BRACKETS = bytes.fromhex(
    "5b33472a3838303930303234322a303133442a55442c3132303632332c3134303032302c412c34382e3934393237332c4e2c20342e3337"
    "38333036302c452c31382e35362c34332e382c302e302c31322c3130302c37362c3232363132302c302c30303030303030302c322c3235"
    "352c3230342c382c333131302c35353032352c3134362c333133302c34393239372c3132342c352c42616e67696e67576966692c33343a"
    "61313a65643a65313a39313a34662c2d37312c42415220576946692c33363a61323a65313a65643a61313a64652c2d37322c4e6574776f"
    "726b576966692c32363a64653a61313a65643a65313a61302c2d37332c46696265722c33363a61313a65643a65313a39313a34662c2d37"
    "352c5b4c475f57616c6c2d4d6f756e7420412f435d653732352c36363a61313a65643a65313a65373a32352c2d38322c31352e305d"
)
# T/WatchFrameDecoderTest.testDecode: four packets in one read (LK, UD, TKQ, LK).
T_FOUR = bytes.fromhex(
    "5b33472a393730353134313734302a303030392a4c4b2c302c302c35335d5b33472a393730353134313734302a303035412a55442c3139"
    "303732332c3139303730372c412c33362e3831353130392c4e2c31302e313739323331322c452c382e32342c3132372e392c32312e302c"
    "352c3130302c35332c302c302c30303030303030302c302c302c35382e305d5b33472a393730353134313734302a303030332a544b515d"
    "5b33472a393730353134313734302a303030392a4c4b2c302c302c35335d"
)
# T/WatchFrameDecoderTest.testDecode: a voice message whose binary content is escaped (7d 01 .. 7d 05).
T_VOICE = b"[CS*1234567890*000e*TK,#!AMR" + bytes.fromhex("7d017d027d037d047d05ff") + b"]"
# 4P §I.1 "Link Keep", both forms; T/WatchProtocolDecoderTest.testDecode has "[SG*8800000015*0002*LK]".
DOC_LK = b"[3G*8800000015*0002*LK]"
DOC_LK_BATTERY = b"[3G*8800000015*000D*LK,50,100,100]"
# T/WatchProtocolDecoderTest.testDecode: LK with only two values (no battery known).
T_LK_TWO = b"[SG*9081000548*0009*LK,0,100]"
# T/WatchProtocolDecoderTest.testDecode and 4P §II.26: "any voice message for me?".
T_TKQ = b"[3G*8800000015*0003*TKQ]"
# T/WatchProtocolDecoderTest.testDecode: blood oxygen, which solewatch does not keep.
T_OXYGEN = b"[3G*9705141740*000B*oxygen,0,98]"


def utc(text: str) -> int:
    return int(time.mktime(time.strptime(text + " UTC", "%Y-%m-%d %H:%M:%S %Z")) - time.timezone)


def test_utc_helper() -> None:
    assert utc("2026-01-01 00:00:00") == NOW


def position_fields(run: Run) -> list[tuple[object, ...]]:
    return [fields_of(event) for event in run.events if isinstance(event, Position)]


def test_the_documented_position_decodes_to_its_fields() -> None:
    run = drive(new_session(), DOC_UD)
    # ts, lat, lon, alt, speed, course, sats, hdop (none sent), battery, flags
    assert position_fields(run) == [
        (utc("2016-09-18 02:57:23"), 225707330, 1138626083, 0, 0, 2495, 6, 0, 60, FLAG_FIX_VALID)
    ]
    assert run.logins[0].imei == "8800000015"
    assert run.sent == b""  # the manufacturer: "Server not reply"


def test_traccar_position_matches_traccars_expectation() -> None:
    run = drive(new_session(), T_UD)
    speed = kmh_to_cms(0.1)
    assert speed == 3
    assert position_fields(run) == [
        (utc("2014-04-22 13:46:52"), 225717070, 1138613968, 100, speed, 0, 7, 0, 90, FLAG_FIX_VALID)
    ]


def test_ud2_is_buffered_and_a_sign_beside_n_or_e_is_kept() -> None:
    run = drive(new_session(), T_UD2_SIGNED)
    assert position_fields(run) == [
        (utc("2016-07-21 23:16:01"), -334803660, -707630692, 0, 0, 0, 0, 0, 34, FLAG_BUFFERED)
    ]
    (documented,) = drive(new_session(), DOC_UD2).events
    assert isinstance(documented, Position)
    assert documented.buffered and documented.fix_valid and documented.sats == 11


def test_west_longitude_speed_and_4g_keyword() -> None:
    (west,) = drive(new_session(), T_UD_WEST).events
    assert isinstance(west, Position)
    assert (west.lat_e7, west.lon_e7, west.speed_cms, west.sats, west.battery) == (414650000, -815312800, 26, 0, 70)
    (lte,) = drive(new_session(), T_UD_LTE).events
    assert isinstance(lte, Position)
    assert (lte.speed_cms, lte.course_ddeg, lte.alt_m, lte.sats, lte.battery) == (857, 2652, 66, 18, 83)


def alarm_kinds_of(run: Run) -> list[int]:
    return [event.kind for event in run.events if isinstance(event, Alarm)]


@pytest.mark.parametrize(
    ("packet", "kinds"),
    [
        (T_AL_SOS, [AlarmKind.SOS]),
        (T_AL_INDEXED, [AlarmKind.TAMPER]),
        (T_AL_FALL, [AlarmKind.FALL]),
        (T_AL_LOW_BATTERY, [AlarmKind.LOW_BATTERY]),
        (T_ALCUSTOMER, [AlarmKind.TAMPER]),
        (DOC_AL, [AlarmKind.TAMPER]),
        (T_AL_NO_BIT, []),
    ],
)
def test_alarm_bits_map_to_alert_kinds(packet: bytes, kinds: list[AlarmKind]) -> None:
    run = drive(new_session(), packet)
    assert alarm_kinds_of(run) == kinds
    assert len([event for event in run.events if isinstance(event, Position)]) == 1


def test_an_alarm_carries_the_packets_time_fix_and_battery() -> None:
    run = drive(new_session(), T_AL_FALL)
    (alarm,) = [event for event in run.events if isinstance(event, Alarm)]
    assert fields_of(alarm) == (utc("2017-08-23 09:53:46"), AlarmKind.FALL, 470839500, 154821850, 44, FLAG_FIX_VALID)


def test_geofence_and_heart_rate_bits_raise_nothing_and_sos_with_low_battery_state_is_sos_only() -> None:
    device = Device("8800000015")
    sos = device.alarm(AlarmKind.SOS, ts=NOW, lat_e7=0, lon_e7=0, battery=10)
    for status, kinds in ((0x000C0000, []), (0x00400000, []), (0x00010001, [AlarmKind.SOS])):
        packet = sos.replace(b"00010000", f"{status:08X}".encode())
        assert alarm_kinds_of(drive(new_session(), packet)) == kinds


def test_an_sos_with_a_garbled_fix_is_still_raised() -> None:
    packet = T_AL_SOS.replace(b",V,0,N,0,E,", b",V,x,N,0,E,").replace(b"170525,214118", b"170525,99")
    run = drive(new_session(), packet)
    assert [fields_of(event) for event in run.events] == [(0, AlarmKind.SOS, 0, 0, 22, 0)]
    assert run.sent == b"[3G*6907919734*0002*AL]"


def test_an_alarm_resent_keeps_its_seq() -> None:
    first = drive(new_session(), T_AL_SOS).events
    again = drive(new_session(), T_AL_SOS).events
    assert [event.seq for event in first] == [event.seq for event in again]


# -- replies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "reply"),
    [
        (DOC_LK, b"[3G*8800000015*0002*LK]"),  # 4P §I.1: "Server reply: [3G*8800000015*0002*LK]"
        (DOC_LK_BATTERY, b"[3G*8800000015*0002*LK]"),  # 4P §I.1 (2)
        (b"[SG*8800000015*0002*LK]", b"[SG*8800000015*0002*LK]"),  # T/WatchProtocolDecoderTest.testDecode
        (T_LK_TWO, b"[SG*9081000548*0002*LK]"),
        (DOC_AL, b"[3G*8800000015*0002*AL]"),  # 4P §I.4: "Server reply: [3G*8800000015*0002*AL]"
        (T_AL_SOS, b"[3G*6907919734*0002*AL]"),  # AL_LTE is answered AL (4P §I.4, Traccar's decoder)
        (T_ALCUSTOMER, b"[3G*358839237678820*0002*AL]"),
        (T_AL_INDEXED, b"[ZJ*689466020014198*0003*0002*AL]"),  # the index echoed, as Traccar's decoder does
        (T_TKQ, b"[3G*8800000015*0003*TKQ]"),  # 4P §II.26
        (b"[3G*8800000015*0004*INIT]", b"[3G*8800000015*0006*INIT,1]"),  # Traccar's decoder answers INIT,1
        # 4P §I.5: "if you constantly receiving the Config command, you can reply this command to stop it"
        (b"[3G*8800000015*0023*CONFIG,TY:G75,UL:600,SY:1,CM:1]", b"[3G*8800000015*0008*CONFIG,1]"),
        (DOC_UD, b""),  # 4P §I.2: "Server not reply"
        (DOC_UD2, b""),  # 4P §I.3
        (T_OXYGEN, b""),  # Traccar's decoder does not answer it either
    ],
)
def test_each_packet_gets_the_reply_the_watch_expects(packet: bytes, reply: bytes) -> None:
    assert bytes(drive(new_session(), packet).sent) == reply


def test_lk_with_a_battery_is_a_heartbeat_dated_by_the_server() -> None:
    run = drive(new_session(), DOC_LK_BATTERY)
    assert [fields_of(event) for event in run.events] == [(NOW, 100, 0)]
    assert isinstance(run.events[0], Heartbeat)
    assert drive(new_session(), DOC_LK).events == []
    assert drive(new_session(), T_LK_TWO).events == []
    # Values that are no number never cost the LK its answer (five unanswered LKs reboot the watch).
    garbled = drive(new_session(), b"[3G*8800000015*000D*LK,x,y,zz]")
    assert garbled.events == [] and bytes(garbled.sent) == DOC_LK


def test_packets_back_to_back_and_brackets_inside_a_packet() -> None:
    run = drive(new_session(), T_FOUR)
    assert [type(event) for event in run.events] == [Heartbeat, Position, Heartbeat]
    assert bytes(run.sent) == b"[3G*9705141740*0002*LK][3G*9705141740*0003*TKQ][3G*9705141740*0002*LK]"
    (position,) = drive(new_session(), T_UD_BRACKETS).events
    assert isinstance(position, Position)
    assert (position.lat_e7, position.lon_e7, position.sats, position.battery) == (489492730, 43783060, 12, 76)


def test_a_voice_message_is_skipped_and_the_next_packet_read() -> None:
    session = new_session()
    run = drive(session, T_VOICE + b"[CS*1234567890*0002*LK]")
    assert bytes(run.sent) == b"[CS*1234567890*0002*LK]"
    assert (session.bad_frames, session.skipped_bytes) == (0, 0)


def test_a_long_escaped_voice_message_is_skipped_whole() -> None:
    audio = bytes(range(256)) * 80  # 20 KiB holding every byte, the framing's own among them
    escaped = audio.replace(b"}", b"}\x01")
    for plain, code in ((b"[", b"\x02"), (b"]", b"\x03"), (b",", b"\x04"), (b"*", b"\x05")):
        escaped = escaped.replace(plain, b"}" + code)
    voice = b"[3G*8800000015*%04X*TK," % (3 + len(audio)) + escaped + b"]"
    assert len(voice) < MAX_PACKET_BYTES
    session = new_session()
    run = drive(session, DOC_LK + voice + DOC_LK_BATTERY)
    assert [type(event) for event in run.events] == [Heartbeat]
    assert bytes(run.sent) == DOC_LK * 2 and (session.bad_frames, session.skipped_bytes) == (0, 0)


# -- chunking --------------------------------------------------------------------------------

VECTORS = [
    DOC_UD,
    DOC_UD2,
    DOC_AL,
    T_UD,
    T_UD2_SIGNED,
    T_UD_WEST,
    T_UD_LTE,
    T_AL_SOS,
    T_AL_INDEXED,
    T_AL_FALL,
    T_AL_LOW_BATTERY,
    T_ALCUSTOMER,
    T_AL_NO_BIT,
    T_UD_BRACKETS,
    T_FOUR,
    T_VOICE,
    DOC_LK,
    DOC_LK_BATTERY,
    T_LK_TWO,
    T_TKQ,
    T_OXYGEN,
]


def outcome(run: Run) -> tuple[object, ...]:
    return (run.logins, run.events, bytes(run.sent), run.end)


@pytest.mark.parametrize("packet", VECTORS, ids=range(len(VECTORS)))
def test_every_vector_split_at_every_byte_gives_the_same_events(packet: bytes) -> None:
    whole = outcome(drive(new_session(), packet))
    assert whole[0]  # every vector names its device
    for cut in range(1, len(packet)):
        session = new_session()
        run = drive(session, packet[:cut])
        assert outcome(drive(session, packet[cut:], run)) == whole, cut
    session = new_session()
    run = Run()
    for byte in packet:
        drive(session, bytes((byte,)), run)
    assert outcome(run) == whole


# -- the session's rules -------------------------------------------------------------------


def test_nothing_comes_out_before_the_login_verdict_and_a_refusal_closes() -> None:
    session = new_session()
    session.receive_data(T_AL_SOS + DOC_LK)
    login = session.next_event()
    assert isinstance(login, Login) and login.imei == "6907919734"
    assert session.next_event() is None  # the verdict first
    refused = session.reject_login(LoginStatus.UNKNOWN_DEVICE, NOW, 0)
    assert refused.close and refused.data == b"" and refused.end is SessionEnd.LOGIN_REFUSED
    assert session.next_event() is None
    assert session.state is SessionState.CLOSED


def test_a_packet_naming_another_device_closes_the_connection() -> None:
    session = new_session()
    run = drive(session, DOC_LK + b"[3G*1111111111*0002*LK]")
    assert run.end is SessionEnd.MALFORMED_LOGIN
    assert bytes(run.sent) == DOC_LK


def test_the_reply_waits_for_every_event_of_its_packet() -> None:
    session = new_session()
    session.receive_data(T_AL_FALL)
    login = session.next_event()
    assert isinstance(login, Login)
    assert session.accept_login(login.imei, NOW, 0) == b""
    position, alarm = session.next_event(), session.next_event()
    assert isinstance(position, Position) and isinstance(alarm, Alarm)
    assert session.next_event() is None
    assert session.acks([position.seq], AckStatus.STORED) == b""
    assert session.acks([alarm.seq], AckStatus.STORED) == b"[3G*8308373902*0002*AL]"


def test_busy_withholds_the_reply_so_the_watch_sends_again() -> None:
    run = drive(new_session(), T_AL_SOS, status=AckStatus.BUSY)
    assert len(run.events) == 2 and run.sent == b""


def test_values_out_of_range_are_dropped_and_the_packet_still_answered() -> None:
    session = new_session()
    out_of_range = DOC_AL.replace(b"22.570512,N", b"95.000000,N")
    run = drive(session, out_of_range)
    assert alarm_kinds_of(run) == [AlarmKind.TAMPER]  # an alarm is never refused for its fix
    assert [event for event in run.events if isinstance(event, Position)] == []
    assert session.rejected == 1
    assert bytes(run.sent) == b"[3G*8800000015*0002*AL]"
    session = new_session()
    run = drive(session, b"[3G*8800000015*000D*LK,50,100,150]")
    assert run.events == [] and session.rejected == 1 and bytes(run.sent) == DOC_LK


def test_a_position_from_the_future_is_dropped() -> None:
    future = Device("8800000015").position(
        ts=int(time.time()) + 3600, lat_e7=1, lon_e7=1, speed_cms=0, course_ddeg=0, battery=50
    )
    session = new_session()
    assert drive(session, future).events == [] and session.rejected == 1


def test_garbage_is_skipped_and_counted() -> None:
    session = new_session()
    run = drive(session, b"\x00\xff[[]*]garbage[3G*12" + DOC_LK_BATTERY)
    assert len(run.events) == 1 and bytes(run.sent) == DOC_LK
    assert session.skipped_bytes == len(b"\x00\xff[[]*]garbage[3G*12")


def test_a_packet_cut_short_is_dropped_and_the_next_one_read() -> None:
    session = new_session()
    run = drive(session, DOC_LK + DOC_AL[:60] + T_UD.replace(b"SG*", b"3G*"))
    assert [type(event) for event in run.events] == [Position]
    assert session.bad_frames == 1 and run.end is None


def test_an_unreadable_position_is_a_bad_packet_and_ten_in_a_row_close() -> None:
    session = new_session()
    bad = DOC_UD.replace(b"180916,025723", b"311316,025723")  # month 13
    run = drive(session, DOC_LK + bad * 9)
    assert run.end is None and session.bad_frames == 9
    run = drive(session, bad, run)
    assert run.end is SessionEnd.BAD_FRAMES


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        (b"180916,025723", b"180916,0257"),  # a time of 4 digits
        (b",A,22.570733,N,", b",X,22.570733,N,"),  # validity neither A nor V
        (b"22.570733,N", b"22.570733,Q"),  # no such hemisphere
        (b"113.8626083,E", b"1e3,E"),  # not a decimal number
        (b",0.00,249.5,", b",-1.0,249.5,"),  # negative speed
        (b",0.00,249.5,", b",0.00,-249.5,"),  # negative course
        (b",6,100,60,", b",six,100,60,"),  # satellites not a number
        (b",7,255,460", b""),  # too few fields
    ],
)
def test_a_position_that_cannot_be_read_is_a_bad_packet(good: bytes, bad: bytes) -> None:
    session = new_session()
    damaged = DOC_UD.replace(good, bad, 1) if bad else DOC_UD[: DOC_UD.index(b",0,0,00000010")] + b"]"
    assert damaged != DOC_UD
    run = drive(session, damaged)
    assert run.events == [] and session.bad_frames == 1


def test_an_alarm_without_a_status_word_is_not_answered() -> None:
    session = new_session()
    run = drive(session, DOC_LK + DOC_AL.replace(b"00100018", b"zz"))
    assert bytes(run.sent) == DOC_LK and session.bad_frames == 1


def test_a_declared_length_past_the_limit_closes() -> None:
    assert MAX_PACKET_BYTES < 0xFFFF
    run = drive(new_session(), DOC_LK + b"[3G*8800000015*FFFF*TK,")
    assert run.end is SessionEnd.BAD_FRAMING and bytes(run.sent) == DOC_LK


def test_a_packet_never_closed_closes_at_the_limit() -> None:
    session = new_session()
    run = drive(session, DOC_LK + b"[3G*8800000015*0100*TK," + b"x" * (MAX_PACKET_BYTES - 100))
    assert run.end is None  # still within the limit: waiting
    run = drive(session, b"x" * 200, run)
    assert run.end is SessionEnd.BAD_FRAMING


# -- commands --------------------------------------------------------------------------------


def online(packet: bytes = b"[3G*5678901234*0002*LK]") -> Session:
    session = new_session()
    drive(session, packet)
    return session


@pytest.mark.parametrize(
    ("cmd", "args", "expected"),
    [
        (CommandCode.LOCATE_NOW, b"", b"[3G*5678901234*0002*CR]"),  # 4P §II.16
        (CommandCode.VIBRATE, b"", b"[3G*5678901234*0004*FIND]"),  # 4P §II.22
        (CommandCode.VIBRATE, b"\x05", b"[3G*5678901234*0004*FIND]"),  # the watch rings its own minute
        (CommandCode.REBOOT, b"", b"[3G*5678901234*0005*RESET]"),  # 4P §II.15
        (CommandCode.SET_INTERVAL, (600).to_bytes(2, "big"), b"[3G*5678901234*000A*UPLOAD,600]"),  # 4P §II.2
        (CommandCode.SET_INTERVAL, (10).to_bytes(2, "big"), b"[3G*5678901234*0009*UPLOAD,60]"),  # the minimum
        (
            CommandCode.ALARM_ACKNOWLEDGED,
            b"",
            b"[3G*5678901234*0050*MESSAGE," + "Alarm acknowledged".encode("utf-16-be").hex().upper().encode() + b"]",
        ),
    ],
)
def test_commands_are_written_as_documented(cmd: CommandCode, args: bytes, expected: bytes) -> None:
    assert online().command(9, cmd, args) == expected


def test_a_command_to_an_indexed_model_carries_an_index() -> None:
    assert online(T_AL_INDEXED).command(1, CommandCode.LOCATE_NOW) == b"[ZJ*689466020014198*0001*0002*CR]"


def test_unknown_commands_are_unsupported() -> None:
    assert online().command(1, 99) is None


def test_the_watchs_answer_is_matched_to_its_command() -> None:
    session = online()
    session.command(41, CommandCode.LOCATE_NOW)
    session.command(42, CommandCode.REBOOT)
    session.command(43, CommandCode.LOCATE_NOW)
    run = drive(session, b"[3G*5678901234*0002*CR][3G*5678901234*0005*RESET][3G*5678901234*0002*CR]")
    results = [(event.cmd_seq, event.status) for event in run.events if isinstance(event, CommandResult)]
    assert results == [(41, CommandStatus.DONE), (42, CommandStatus.DONE), (43, CommandStatus.DONE)]
    assert run.sent == b""
    # an answer to nothing sent is nothing
    assert drive(session, b"[3G*5678901234*0002*CR]").events == []


# -- a watch's side --------------------------------------------------------------------------


def round_trip(packet: bytes, device: Device) -> tuple[list[DeviceEvent], list[FromServer]]:
    session = new_session()
    run = drive(session, packet)
    assert run.end is None
    return run.events, device.feed(bytes(run.sent))


def test_device_position_round_trip() -> None:
    device = Device("8800000015")
    ts = NOW - 60
    for buffered in (False, True):
        packet = device.position(
            ts=ts, lat_e7=-335000001, lon_e7=1234567, speed_cms=140, course_ddeg=2705, battery=80, buffered=buffered
        )
        events, heard = round_trip(packet, device)
        flags = FLAG_FIX_VALID | (FLAG_BUFFERED if buffered else 0)
        assert [fields_of(event) for event in events] == [(ts, -335000001, 1234567, 0, 140, 2705, 8, 0, 80, flags)]
        assert heard == []  # a watch expects no reply to a position
    assert Device.acks_positions is False


@pytest.mark.parametrize("kind", [AlarmKind.SOS, AlarmKind.FALL, AlarmKind.LOW_BATTERY, AlarmKind.TAMPER])
def test_device_alarm_round_trip(kind: AlarmKind) -> None:
    device = Device("8800000015")
    events, heard = round_trip(device.alarm(kind, ts=NOW, lat_e7=1, lon_e7=-2, battery=5), device)
    assert [fields_of(event) for event in events if isinstance(event, Alarm)] == [(NOW, kind, 1, -2, 5, FLAG_FIX_VALID)]
    assert heard == [FromServer("ack", b"[3G*8800000015*0002*AL]")]


def test_device_has_no_alarm_the_watch_cannot_say() -> None:
    with pytest.raises(ValueError, match="NO_MOTION"):
        Device("8800000015").alarm(AlarmKind.NO_MOTION, ts=NOW, lat_e7=0, lon_e7=0, battery=5)


def test_device_heartbeat_and_link_keep_round_trip() -> None:
    device = Device("8800000015", manufacturer="SG")
    events, heard = round_trip(device.heartbeat(ts=NOW, battery=42), device)
    assert [fields_of(event) for event in events] == [(NOW, 42, 0)]
    assert heard == [FromServer("ack", b"[SG*8800000015*0002*LK]")]
    events, heard = round_trip(device.link_keep(), device)
    assert events == [] and heard == [FromServer("ack", b"[SG*8800000015*0002*LK]")]


def test_device_position_with_battery_unknown() -> None:
    device = Device("8800000015")
    packet = device.position(ts=NOW, lat_e7=0, lon_e7=0, speed_cms=0, course_ddeg=0, battery=BATTERY_UNKNOWN)
    (position,), _ = round_trip(packet, device)
    assert isinstance(position, Position) and position.battery == BATTERY_UNKNOWN


@pytest.mark.parametrize("code", list(CommandCode))
def test_device_reads_every_command_in_any_chunking_and_answers_it(code: CommandCode) -> None:
    session = online()
    args = (300).to_bytes(2, "big") if code is CommandCode.SET_INTERVAL else b""
    sent = session.command(7, code, args)
    assert sent is not None
    device = Device("5678901234")
    heard = [item for byte in sent for item in device.feed(bytes((byte,)))]
    assert heard == [FromServer("command", sent, command=int(code))]
    run = drive(session, device.answer(heard[0]))
    assert [fields_of(event) for event in run.events] == [(7, CommandStatus.DONE)]

"""The H02 codec (shared/protocols/h02) driven as the listener drives it, with real frames.

Sources of the vectors, cited on each:
- [T] Traccar, src/test/java/org/traccar/protocol/H02ProtocolDecoderTest.java, testDecode
  (Apache-2.0), the frames and, where it checks them, the decoded time and coordinates;
- [TF] Traccar, H02FrameDecoderTest.java (testDecodeShort, testDecodeLong);
- [TE] Traccar, H02ProtocolEncoderTest.java (testPositionPeriodicEncode);
- [S] the Sinotrack ST-901 protocol text ("Protocol ST-901,901M,...": the D1 command's feedback example);
- [C] the Cantrack G20LS protocol document (2023): its V1 and HTBT examples.
"""

from __future__ import annotations

import calendar
import time

import pytest

from shared.protocols.h02 import Device, Session
from shared.protocols.h02.framing import MAX_TEXT
from shared.protocols.tracker import BATTERY_UNKNOWN, MAX_BAD_PACKETS_IN_A_ROW
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

NOW = 1765000000.0  # 2025-12-06 05:46:40 UTC
STAMP = "20251206054640"


def utc(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


class Run:
    """What a session said while fed some bytes: events, reply bytes, and how it ended."""

    def __init__(self) -> None:
        self.session = Session(clock=lambda: NOW)
        self.events: list[object] = []
        self.replies = b""
        self.closed: Reply | None = None

    def feed(self, data: bytes, *, accept: bool = True, status: AckStatus = AckStatus.STORED) -> Run:
        self.session.receive_data(data)
        while True:
            event = self.session.next_event()
            if event is None:
                return self
            if isinstance(event, Login):
                if accept:
                    self.replies += self.session.accept_login(event.imei, int(NOW), 0)
                else:
                    refused = self.session.reject_login(LoginStatus.UNKNOWN_DEVICE, int(NOW), 0)
                    self.replies += refused.data
                    self.closed = refused
                    return self
            elif isinstance(event, Reply):
                self.replies += event.data
                if event.close:
                    self.closed = event
                    return self
            else:
                self.events.append(event)
                self.replies += self.session.acks([event.seq], status)


def run(data: bytes, *, accept: bool = True, status: AckStatus = AckStatus.STORED) -> Run:
    return Run().feed(data, accept=accept, status=status)


def binary(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


# -- decoded fields, to the documented precision ----------------------------------------------


def test_v1_from_the_cantrack_document_decodes_to_its_fields() -> None:
    # [C] the V1 example of the G20LS document's "Device Response Data Structure"
    r = run(b"*HQ,865205030330012,V1,145452,A,2240.55181,N,11358.32389,E,0.00,0,100815,FFFFFBFF#")
    assert r.events == [
        Position(
            r.events[0].seq,
            utc("2015-08-10 14:54:52"),
            226758635,
            1139720648,
            0,
            0,
            0,
            0,
            0,
            BATTERY_UNKNOWN,
            FLAG_FIX_VALID,
        )
    ]
    assert r.replies == f"*HQ,865205030330012,V4,V1,{STAMP}#".encode()


@pytest.mark.parametrize(
    ("frame", "when", "valid", "lat", "lon"),
    [
        # [T] the V8 frame checked against position("2025-10-22 21:39:45.000", true, 35.70340, -0.64418)
        (b"*HQ,9001000002,V8,213945,A,3542.2043,N,38.6508,W,0.00,170,221025,FBFFF9FF,0,0,0,0,22,31,126,0#",
         "2025-10-22 21:39:45", True, 35.70340, -0.64418),
        # [T] position("2015-12-22 16:45:49.000", true, 9.93978, -84.11178)
        (b"*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,000.00,000,221215,FFFFFBFF,712,01,0,0,6#",
         "2015-12-22 16:45:49", True, 9.93978, -84.11178),
        # [T] position("2015-10-03 05:04:18.000", false, 28.46021, 77.06414): an empty validity field
        (b"*HQ,355488020119695,V1,050418,,2827.61232,N,07703.84822,E,0.00,0,031015,FFFEFBFF#",
         "2015-10-03 05:04:18", False, 28.46021, 77.06414),
        # [T] position("2015-03-07 03:01:49.000", true, -23.48349, -46.85975): the dashed coordinate form
        (b"*HQ,1451316409,V1,030149,A,-23-29.0095,S,-46-51.5852,W,2.4,065,070315,FFFFFFFF#",
         "2015-03-07 03:01:49", True, -23.48349, -46.85975),
        # [T] binary, long form: position("2015-08-31 21:53:21.000", true, 4.69898, -74.06971)
        (binary("24410600082621532131081504419390060740418306000000fffffbfdff0015060000002c02dc0c000000001f"),
         "2015-08-31 21:53:21", True, 4.69898, -74.06971),
    ],
)  # fmt: skip
def test_traccar_checked_positions(frame: bytes, when: str, valid: bool, lat: float, lon: float) -> None:
    position = next(e for e in run(frame).events if isinstance(e, Position))
    assert position.ts == utc(when)
    assert position.fix_valid is valid
    assert position.lat_e7 == pytest.approx(lat * 10**7, abs=100)  # Traccar checks to 1e-5 degree
    assert position.lon_e7 == pytest.approx(lon * 10**7, abs=100)


def test_speed_in_knots_and_course_in_tenths() -> None:
    # [S] the D1 feedback example, also [T]: 14.28 knots, course 028
    r = run(b"*TH,2020916012,V1,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#")
    (position,) = r.events
    assert isinstance(position, Position)
    assert position.speed_cms == 735  # 14.28 kn = 7.346 m/s
    assert position.course_ddeg == 280
    assert position.ts == utc("2002-09-22 05:03:16")  # the device's clock is UTC, not Beijing time
    assert r.replies == f"*HQ,2020916012,V4,V1,{STAMP}#".encode()  # answered with HQ, whatever the maker


def test_binary_short_form_battery_and_hemispheres() -> None:
    # [T], [TF] testDecodeShort: 32 bytes, battery byte 06 (level 6 → 100%), flags e: valid, N, E
    (position,) = run(binary("2441060116601245431311165035313006004318210e000000fffffbffff0024")).events
    assert isinstance(position, Position)
    assert (position.ts, position.battery, position.flags) == (utc("2016-11-13 12:45:43"), 100, FLAG_FIX_VALID)
    assert position.lat_e7 == round((50 + 35.3130 / 60) * 10**7)
    assert position.lon_e7 == round((4 + 31.8210 / 60) * 10**7)


def test_binary_long_id_gives_15_digits() -> None:
    # [T] the 42-byte frame whose id takes 8 bytes
    r = run(binary("2435248308419329301047591808172627335900074412294E024138FEFFFFFFFF01120064BA73005ECC"))
    (position,) = r.events
    assert r.session.imei == "352483084193293"
    assert isinstance(position, Position)
    assert (position.speed_cms, position.course_ddeg) == (1235, 1380)  # 24 knots, 138 degrees
    assert r.replies == b""  # Traccar answers binary packets nothing


# -- alarms from the status word ---------------------------------------------------------------


def test_sos_bit_raises_an_sos_alarm_with_the_fix() -> None:
    # [T]: status FFFBFFFF, bit 18 at 0 (Traccar reads it as SOS)
    r = run(b"*HQ,353505220903211,V1,075228,A,5227.5039,N,01032.8443,E,0.00,0,231013,FFFBFFFF,106,14, 201,2173#")
    position, alarm = r.events
    assert isinstance(alarm, Alarm) and isinstance(position, Position)
    assert (alarm.kind, alarm.ts) == (AlarmKind.SOS, position.ts)
    assert (alarm.lat_e7, alarm.lon_e7) == (position.lat_e7, position.lon_e7)


def test_power_taken_out_raises_tamper() -> None:
    # [T]: status FFE7FBFF, bits 19 and 20 at 0: "external power was taken out" (Sinotrack's P1/P2 table)
    r = run(b"*HQ,4300256455,V1,111817,A,1935.5128,N,04656.3243,E,0.00,100,170913,FFE7FBFF#")
    assert [e.kind for e in r.events if isinstance(e, Alarm)] == [AlarmKind.TAMPER]


def test_sos_without_a_fix_still_comes_through() -> None:
    # [T]'s no-fix frame "V1,,V,,N,,E,..." with the SOS bit cleared: the alarm has no location
    r = run(b"*HQ,353505510948929,V1,,V,,N,,E,0.00,0,,FFFFFFFD,f0,a,11a0,c0c6#")
    (alarm,) = r.events
    assert isinstance(alarm, Alarm)
    assert (alarm.kind, alarm.lat_e7, alarm.lon_e7, alarm.fix_valid) == (AlarmKind.SOS, 0, 0, False)
    assert alarm.ts == int(NOW)  # the packet has no clock: the receive time
    assert r.session.bad_frames == 0


def test_a_resent_alarm_keeps_its_seq() -> None:
    frame = b"*HQ,353505220903211,V1,075228,A,5227.5039,N,01032.8443,E,0.00,0,231013,FFFBFFFF#"
    assert run(frame).events[1].seq == run(frame).events[1].seq


def test_ignored_status_bits_raise_nothing() -> None:
    # [T]'s V19 frame (status after an IP and an ICCID) with bit 9 (armed) cleared besides bit 10 (ACC off):
    # status bits that are no alarm of ours raise none
    r = run(
        b"*HQ,4209917484,V19,093043,V,5052.9749,N,00426.4322,E,000.00,000,130916,,0032475874141,"
        b"8944538530000543700F,FFFFF9FF#"
    )
    assert [type(e) for e in r.events] == [Position]


# -- heartbeats and their replies ---------------------------------------------------------------


def test_htbt_heartbeat_battery_and_reply() -> None:
    # [C] the HTBT example and [T]: battery 100; the reply is the packet's head (Traccar)
    r = run(b"*HQ,135790246811220,HTBT,100#")
    assert r.events == [Heartbeat(r.events[0].seq, int(NOW), 100, 0)]
    assert r.replies == b"*HQ,135790246811220,HTBT#"


def test_link_heartbeat_reads_battery_and_the_device_clock() -> None:
    r = run(b"*HQ,1700086468,LINK,180902,15,0,84,0,0,240517,FFFFFBFF#")  # [T]
    assert r.events == [Heartbeat(r.events[0].seq, utc("2017-05-24 18:09:02"), 84, 0)]
    assert r.replies == b""


def test_nbr_is_a_heartbeat_answered_with_v4() -> None:
    # [T]
    r = run(b"*HQ,7401004662,NBR,160453,234,10,0,2,21580,27766,-67,21580,27766,-67,291019,FFFFFBFF,6#")
    assert r.events == [Heartbeat(r.events[0].seq, utc("2019-10-29 16:04:53"), BATTERY_UNKNOWN, 0)]
    assert r.replies == f"*HQ,7401004662,V4,NBR,{STAMP}#".encode()


def test_xt_is_a_heartbeat_with_no_reply() -> None:
    r = run(b"*HQ,356327080425330,XT,1,100#")  # [T] verifyNull: Traccar stores nothing and answers nothing
    assert [type(e) for e in r.events] == [Heartbeat] and r.replies == b""


def test_info_packets_log_in_and_say_nothing() -> None:
    r = run(b"*HQ,8401016597,BASE,152609,0,0,0,0,211014,FFFFFFFF#")  # [T] verifyNull
    assert (r.events, r.replies, r.session.state) == ([], b"", SessionState.ONLINE)
    assert r.session.bad_frames == 0


# -- framing: chunks, garbage, limits ---------------------------------------------------------

TRACCAR_STREAM = [
    # [T] testDecode, text
    b"*HQ,865205035331981,V1,132926,A,1935.3933,N,07920.4134,E,  3.34,342,280519,FFFFFFFF#",
    b"*HQ,4210209006,V1,054048,A,2828.2297,N,07733.4332,E,000.5,047,4,080918,EEE7FBDF,4261193,0#",
    b"*HQ,1600068860,LINK,112137,20,8,67,0,0,081116,FFFFFBFF#",
    b"*TH,2020916012,V4,S20,ERROR,130305,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#",
    b"*hq,356327080425330,VP1,A,2702.7245,S,15251.9311,E,0.48,0.0000,080917#",
    # [TF] testDecodeShort: a text frame ended with CR LF
    binary("2a48512c3335353438383032303131333931312c56312c3031323934352c412c353233312e37393238332c4e2c303133"
           "32342e31303731382c452c302e30352c302c3137303231372c4646464646464646230d0a"),
    # [T] binary frames of 32, 45 and 46 bytes
    binary("2427051711092133391406135002584900014337822e000000ffffffffff0000"),
    binary("2442091341332059572807175137358006000183640e000000fffffbfdff001f080000000000ea1e0000000021"),
    binary("2421305109380127171003170520046500100286297e003085ffffdfffff03440069129344006400001151415a20"),
    # [TF] testDecodeAlternative: an NBR frame
    binary("2a48512c343230363131393133302c4e42522c3130323430332c3233382c312c302c372c313131312c323236342c36332c"
           "313131312c323236352c35382c313131312c323236362c35302c313131312c333133352c33372c313131312c3630352c33"
           "332c313131312c343932302c33302c313131312c3630372c32382c3131303131372c46464646444646462c3623"),
]  # fmt: skip


# The frames of the tests above, each as cited there: every one is fed cut at every byte boundary too.
OTHER_VECTORS = [
    b"*HQ,865205030330012,V1,145452,A,2240.55181,N,11358.32389,E,0.00,0,100815,FFFFFBFF#",  # [C]
    b"*HQ,9001000002,V8,213945,A,3542.2043,N,38.6508,W,0.00,170,221025,FBFFF9FF,0,0,0,0,22,31,126,0#",  # [T]
    b"*HQ,355488020119695,V1,050418,,2827.61232,N,07703.84822,E,0.00,0,031015,FFFEFBFF#",  # [T]
    b"*HQ,1451316409,V1,030149,A,-23-29.0095,S,-46-51.5852,W,2.4,065,070315,FFFFFFFF#",  # [T]
    binary("24410600082621532131081504419390060740418306000000fffffbfdff0015060000002c02dc0c000000001f"),  # [T]
    b"*TH,2020916012,V1,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#",  # [S], [T]
    binary("2441060116601245431311165035313006004318210e000000fffffbffff0024"),  # [T], [TF]
    binary("2435248308419329301047591808172627335900074412294E024138FEFFFFFFFF01120064BA73005ECC"),  # [T]
    b"*HQ,353505220903211,V1,075228,A,5227.5039,N,01032.8443,E,0.00,0,231013,FFFBFFFF,106,14, 201,2173#",  # [T]
    b"*HQ,4300256455,V1,111817,A,1935.5128,N,04656.3243,E,0.00,100,170913,FFE7FBFF#",  # [T]
    b"*HQ,135790246811220,HTBT,100#",  # [C], [T]
    b"*HQ,7401004662,NBR,160453,234,10,0,2,21580,27766,-67,21580,27766,-67,291019,FFFFFBFF,6#",  # [T]
    b"*HQ,356327080425330,XT,1,100#",  # [T]
    b"*HQ,8401016597,BASE,152609,0,0,0,0,211014,FFFFFFFF#",  # [T]
    binary("24971305007205201916101533335008000073206976000000effffbffff000252776566060000000000000000000049"),  # [T]
]


def _without_seqless_noise(r: Run) -> tuple[list[object], bytes, int, int]:
    return r.events, r.replies, r.session.bad_frames, r.session.rejected


@pytest.mark.parametrize("frame", TRACCAR_STREAM + OTHER_VECTORS)
def test_every_byte_boundary_gives_the_same_events(frame: bytes) -> None:
    whole = _without_seqless_noise(run(frame + frame))
    for cut in range(1, len(frame) * 2):
        doubled = frame + frame
        assert _without_seqless_noise(Run().feed(doubled[:cut]).feed(doubled[cut:])) == whole, cut
    r = Run()
    for byte in frame + frame:
        r.feed(bytes((byte,)))
    assert _without_seqless_noise(r) == whole


def test_garbage_before_and_between_packets_is_skipped_and_counted() -> None:
    frame = TRACCAR_STREAM[0]
    r = run(b"\x00\xffgarbage*" + frame + b"$$junk" + frame)
    assert [type(e) for e in r.events] == [Position, Position]
    assert r.session.skipped_bytes == len(b"\x00\xffgarbage*") + len(b"$$junk")
    assert r.session.bad_frames == 0


def test_a_stray_dollar_does_not_hold_up_a_short_packet() -> None:
    r = run(b"$*HQ,135790246811220,HTBT,100#")  # [C]'s heartbeat after a stray binary marker
    assert [type(e) for e in r.events] == [Heartbeat]
    assert r.replies == b"*HQ,135790246811220,HTBT#"


def test_a_packet_cut_short_by_the_next_is_dropped_and_the_next_kept() -> None:
    frame = TRACCAR_STREAM[0]
    r = run(frame[:40] + frame)
    assert [type(e) for e in r.events] == [Position]
    assert r.session.skipped_bytes == 40


def test_an_endless_text_packet_closes_the_connection() -> None:
    r = run(b"*HQ,865205035331981,V1," + b"9" * MAX_TEXT)
    assert r.closed is not None and r.closed.end is SessionEnd.BAD_FRAMING
    assert r.events == []


def test_a_packet_not_understood_is_counted_and_the_next_one_decoded() -> None:
    frame = TRACCAR_STREAM[0]
    r = run(frame + b"*HQ,865205035,V1,132926,A,1935.3933,N,07920.4134,E,3.34,342,280519,FFFFFFFF#" + frame)
    assert [type(e) for e in r.events] == [Position, Position]
    assert r.session.bad_frames == 1  # a 9-digit id: no H02 device's (10 to 15 digits)
    assert r.replies.count(b"V4,V1") == 2


def test_a_fix_that_does_not_read_still_gives_the_alarm_and_the_reply() -> None:
    r = run(b"*HQ,865205035331981,V1,132926,A,19x5.39,N,07920.4134,E,3.34,342,280519,FFFFFFFD#")
    assert [(type(e), getattr(e, "kind", None)) for e in r.events] == [(Alarm, AlarmKind.SOS)]
    assert r.replies == f"*HQ,865205035331981,V4,V1,{STAMP}#".encode()


def test_zero_coordinates_with_hemispheres_read() -> None:
    (position,) = run(b"*HQ,865205035331981,V1,132926,V,0.0000,N,0.0000,E,0.00,0,280519,FFFFFFFF#").events
    assert isinstance(position, Position) and (position.lat_e7, position.lon_e7) == (0, 0)


def test_ten_bad_packets_in_a_row_close() -> None:
    bad = b"*HQ,NOTANID,V1,132926,A,1935.3933,N,07920.4134,E,3.34,342,280519,FFFFFFFF#"
    r = run(TRACCAR_STREAM[0] + bad * MAX_BAD_PACKETS_IN_A_ROW)
    assert r.closed is not None and r.closed.end is SessionEnd.BAD_FRAMES


# -- the session's rules ----------------------------------------------------------------------


def test_events_wait_for_the_login_verdict() -> None:
    s = Session(clock=lambda: NOW)
    s.receive_data(TRACCAR_STREAM[0])
    login = s.next_event()
    assert isinstance(login, Login) and login.imei == "865205035331981"
    assert s.next_event() is None  # nothing is handed out before the verdict
    assert s.accept_login(login.imei, int(NOW), 0) == b""  # the reply waits for the position's ack
    position = s.next_event()
    assert isinstance(position, Position)
    assert s.acks([position.seq], AckStatus.STORED) == f"*HQ,865205035331981,V4,V1,{STAMP}#".encode()


def test_a_refused_device_gets_nothing_and_is_closed() -> None:
    r = run(TRACCAR_STREAM[0], accept=False)
    assert r.closed is not None and r.closed.end is SessionEnd.LOGIN_REFUSED
    assert (r.events, r.replies) == ([], b"")


def test_a_packet_naming_another_device_closes() -> None:
    r = run(TRACCAR_STREAM[0] + b"*HQ,1600068860,LINK,112137,20,8,67,0,0,081116,FFFFFBFF#")
    assert len(r.events) == 1
    assert r.closed is not None and r.closed.end is SessionEnd.MALFORMED_LOGIN


def test_a_packet_without_a_device_id_is_not_a_login() -> None:
    r = run(b"*HQ,,V1,173212,A,2225.78879,S,02829.19021,E,0.00,0,290418,FFFFFBFF#")  # [T]
    assert (r.events, r.session.state, r.session.bad_frames) == ([], SessionState.AWAITING_LOGIN, 1)


def test_values_out_of_range_are_dropped_and_the_packet_still_answered() -> None:
    r = run(b"*HQ,865205035331981,V1,132926,A,9535.3933,N,07920.4134,E,3.34,342,280519,FFFFFFFF#")  # 95 N
    assert r.events == [] and r.session.rejected == 1
    assert r.replies == f"*HQ,865205035331981,V4,V1,{STAMP}#".encode()


def test_the_reply_waits_for_every_event_of_the_packet() -> None:
    s = Session(clock=lambda: NOW)
    s.receive_data(b"*HQ,353505220903211,V1,075228,A,5227.5039,N,01032.8443,E,0.00,0,231013,FFFBFFFF#")
    login = s.next_event()
    assert isinstance(login, Login)
    s.accept_login(login.imei, int(NOW), 0)
    position, alarm = s.next_event(), s.next_event()
    assert isinstance(position, Position) and isinstance(alarm, Alarm)
    assert s.acks([position.seq], AckStatus.STORED) == b""
    assert s.acks([alarm.seq], AckStatus.STORED) == f"*HQ,353505220903211,V4,V1,{STAMP}#".encode()


def test_busy_withholds_the_reply_so_the_device_resends() -> None:
    r = run(TRACCAR_STREAM[0], status=AckStatus.BUSY)
    assert len(r.events) == 1 and r.replies == b""


# -- commands ---------------------------------------------------------------------------------


def _online(imei: str = "123456789012345", clock: float = NOW) -> Session:
    s = Session(clock=lambda: clock)
    s.receive_data(f"*HQ,{imei},HTBT,90#".encode())
    login = s.next_event()
    assert isinstance(login, Login)
    s.accept_login(login.imei, int(clock), 0)
    heartbeat = s.next_event()
    assert heartbeat is not None
    s.acks([heartbeat.seq], AckStatus.STORED)
    return s


def test_set_interval_is_traccars_s71() -> None:
    # [TE] testPositionPeriodicEncode: "*HQ,123456789012345,S71,010203,22,10#" at 01:02:03
    s = _online(clock=utc("2025-01-01 01:02:03"))
    assert s.command(7, CommandCode.SET_INTERVAL, (10).to_bytes(2, "big")) == b"*HQ,123456789012345,S71,010203,22,10#"


def test_commands_map_and_unsupported_ones_are_none() -> None:
    s = _online()
    assert s.command(1, CommandCode.LOCATE_NOW) == b"*HQ,123456789012345,D1,054640,30,1#"
    assert s.command(2, CommandCode.ALARM_ACKNOWLEDGED) == b"*HQ,123456789012345,R7,054640#"
    assert s.command(3, CommandCode.REBOOT) == b"*HQ,123456789012345,R1,054640#"
    assert s.command(4, CommandCode.VIBRATE) is None
    assert s.command(5, 99) is None
    assert s.command(6, CommandCode.SET_INTERVAL, b"\x01") is None  # malformed arguments


def test_a_v4_confirmation_completes_its_command() -> None:
    s = _online(imei="2020916012")
    s.command(42, CommandCode.SET_INTERVAL, (60).to_bytes(2, "big"))
    # the confirm message's form, as [S] and [T]'s V4 frames show it
    s.receive_data(b"*HQ,2020916012,V4,S71,054640,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#")
    result = s.next_event()
    assert isinstance(result, CommandResult)
    assert (result.cmd_seq, result.status) == (42, CommandStatus.DONE)
    assert isinstance(s.next_event(), Position)


def test_a_v4_error_fails_its_command() -> None:
    s = _online(imei="2020916012")
    s.command(9, CommandCode.SET_INTERVAL, (60).to_bytes(2, "big"))
    s.receive_data(b"*HQ,2020916012,V4,S71,ERROR,054640,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#")
    result = s.next_event()
    assert isinstance(result, CommandResult) and result.status == CommandStatus.FAILED


# -- the device side ---------------------------------------------------------------------------


def _round_trip(device: Device, session: Session, packet: bytes) -> tuple[list[object], list[object]]:
    session.receive_data(packet)
    events: list[object] = []
    replies = b""
    while (event := session.next_event()) is not None:
        if isinstance(event, Login):
            replies += session.accept_login(event.imei, int(NOW), 0)
        elif isinstance(event, Reply):
            replies += event.data
        else:
            events.append(event)
            replies += session.acks([event.seq], AckStatus.STORED)
    heard: list[object] = []
    for byte in replies:  # the device reads the replies a byte at a time
        heard += device.feed(bytes((byte,)))
    return events, heard


def test_device_round_trip_for_every_packet_kind() -> None:
    device, session = Device("4210051415", clock=lambda: NOW), Session(clock=lambda: NOW)
    ts = utc("2025-12-06 05:40:00")
    events, heard = _round_trip(
        device, session,
        device.position(ts=ts, lat_e7=-338688000, lon_e7=1512093000, speed_cms=1389, course_ddeg=2705, battery=80),
    )  # fmt: skip
    (position,) = events
    assert isinstance(position, Position)
    assert (position.ts, position.course_ddeg, position.flags) == (ts, 2705, FLAG_FIX_VALID)
    assert position.lat_e7 == pytest.approx(-338688000, abs=2) and position.lon_e7 == pytest.approx(1512093000, abs=2)
    assert position.speed_cms == pytest.approx(1389, abs=1)
    assert [f.kind for f in heard] == ["ack"]
    for kind in (AlarmKind.SOS, AlarmKind.TAMPER):
        events, heard = _round_trip(device, session, device.alarm(kind, ts=ts, lat_e7=10, lon_e7=-10, battery=50))
        assert [e.kind for e in events if isinstance(e, Alarm)] == [kind]
        assert [f.kind for f in heard] == ["ack"]
    events, heard = _round_trip(device, session, device.heartbeat(ts=ts, battery=55))
    assert [(type(e), e.battery) for e in events] == [(Heartbeat, 55)]
    assert [f.kind for f in heard] == ["ack"]


def test_device_cannot_say_what_h02_cannot() -> None:
    with pytest.raises(ValueError):
        Device("4210051415").alarm(AlarmKind.FALL, ts=0, lat_e7=0, lon_e7=0, battery=0)
    with pytest.raises(ValueError):
        Device("12345")


@pytest.mark.parametrize(
    ("code", "args", "answered"),
    [(CommandCode.LOCATE_NOW, b"", True), (CommandCode.SET_INTERVAL, b"\x00\x3c", True),
     (CommandCode.ALARM_ACKNOWLEDGED, b"", False), (CommandCode.REBOOT, b"", False)],
)  # fmt: skip
def test_device_understands_commands_and_answers_them(code: CommandCode, args: bytes, answered: bool) -> None:
    device, session = Device("4210051415", clock=lambda: NOW), Session(clock=lambda: NOW)
    _round_trip(device, session, device.heartbeat(ts=int(NOW), battery=70))
    sent = session.command(77, code, args)
    assert sent is not None
    (heard,) = device.feed(sent[:5]) + device.feed(sent[5:])
    assert (heard.kind, heard.command) == ("command", int(code))
    answer = device.answer(heard)
    assert bool(answer) is answered
    if answered:
        events, _ = _round_trip(device, session, answer)
        results = [e for e in events if isinstance(e, CommandResult)]
        assert [(r.cmd_seq, r.status) for r in results] == [(77, CommandStatus.DONE)]

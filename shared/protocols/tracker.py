"""What a tracker protocol's codec gives the listener (CONTRACT §10), and the part they all share.

GT06, H02, the 3G watch protocol and Teltonika are spoken over TCP like XSole,
so their devices go through the listener's one ingest path
(services/listener/ingest.py) and must look like an XSole session to it:
bytes in with `receive_data`, events out with `next_event` (a `Login` first,
then the same typed telemetry events XSole decodes to: `Position`, `Alarm`,
`Heartbeat`, `CommandResult`), the login verdict given back with
`accept_login` / `reject_login`, and the acknowledgement of what was made
durable asked for with `acks`.

What differs is that one packet of these protocols may carry several events
(a Teltonika AVL packet holds up to 255 records; a GT06 alarm packet is a
position and an alarm) and is acknowledged once, in the protocol's own bytes,
after all of them are durable. `TrackerSession` keeps that bookkeeping: a
protocol's codec only says, for each packet, what it meant (`Decoded`), and
how its replies are written. Events leave the session in packet order and the
committer acknowledges each link's events in the order they were handed out,
so the session releases a packet's reply when its last event is acknowledged.

The values an XSole device sends in range are checked here too (`validate`):
an event out of range is dropped and counted (`rejected`), never handed on,
and its packet is still acknowledged, because these devices resend an
unacknowledged packet forever and nothing would ever make it valid.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from shared.protocols.xsole.constants import AckStatus, LoginStatus
from shared.protocols.xsole.messages import Alarm, DeviceEvent, Login
from shared.protocols.xsole.session import Reply, SessionEnd, SessionState
from shared.protocols.xsole.validation import validate

PROTOCOLS = ("xsole", "gt06", "h02", "watch", "teltonika")
BATTERY_UNKNOWN = -1  # a position or alarm whose packet says nothing of the battery
MAX_BAD_PACKETS_IN_A_ROW = 10


def knots_to_cms(knots: float) -> int:
    return round(knots * 1852 / 36)


def kmh_to_cms(kmh: float) -> int:
    return round(kmh * 100 / 3.6)


def stable_seq(*fields: object) -> int:
    """A seq drawn from what an event says, not from a connection's counter: an alarm resent after a
    reconnect gets the seq it had, so the store keeps it once (alarms are unique by device, ts, seq)."""
    return zlib.crc32(repr(fields).encode()) & 0xFFFF


class TrackerProtocolError(Exception):
    """The byte stream cannot be framed any more (a length past the protocol's limit): close."""


class TooManyBadPackets(TrackerProtocolError):
    """Bad packets kept coming (checksums, forms not understood): close, as XSole does after bad frames."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one packet meant.

    - `imei`: the identifier the packet logs in with or carries (H02 and watch
      packets name their device in every packet; GT06 and Teltonika only in
      their login), None when it names none;
    - `events`: telemetry to store, in order;
    - `reply`: the protocol's acknowledgement, sent once every event is
      durable (at once when there is none); b"" when the protocol wants none;
    - `login`: True for a packet that only logs in (GT06 0x01, Teltonika's
      IMEI preamble): its reply is given by `login_reply` after the verdict.
    """

    imei: str | None = None
    events: tuple[DeviceEvent, ...] = ()
    reply: bytes = b""
    login: bool = False
    firmware: int = 0


@dataclass(slots=True)
class _Handed:
    left: int  # its events not yet acknowledged
    reply: bytes  # sent when none is left, if all were stored
    alarm_kinds: frozenset[int]  # of its alarms
    stored: bool = True  # False once one of its events was not


class TrackerSession:
    """One connection's state for a tracker protocol; a codec subclasses it and writes
    `_next_packet`, `login_reply` and `command`."""

    protocol: ClassVar[str]

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.state = SessionState.AWAITING_LOGIN
        self.imei: str | None = None
        self.bad_frames = 0  # packets dropped for a bad checksum or a form not understood
        self.bad_frames_in_a_row = 0
        self.rejected = 0  # events dropped for values out of range
        self.skipped_bytes = 0  # bytes skipped to find the next packet's start
        self._ready: deque[DeviceEvent] = deque()  # decoded, not yet handed out
        self._unacked: deque[_Handed] = deque()  # packets handed out, oldest first
        # Alarm kinds a status word keeps repeating (`latched`): handed out, not yet acknowledged; stored.
        self._alarms_in_flight: set[int] = set()
        self._alarms_stored: set[int] = set()
        self._login_packet: Decoded | None = None

    # -- what the ingest step calls -------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_event(self) -> Login | DeviceEvent | Reply | None:
        while self.state in (SessionState.ONLINE, SessionState.AWAITING_LOGIN):
            if self._ready:
                return self._ready.popleft()
            try:
                packet = self._next_packet()
            except TooManyBadPackets as exc:
                return self._close(str(exc), SessionEnd.BAD_FRAMES)
            except TrackerProtocolError as exc:
                return self._close(str(exc), SessionEnd.BAD_FRAMING)
            if packet is None:
                return None
            outcome = self._take(packet)
            if outcome is not None:
                return outcome
        return None

    @property
    def drained(self) -> bool:
        """Every byte received has been handed out: nothing comes out until more are fed."""
        return not self._ready and not self._buffer

    def take_telemetry(self, received_at: float, limit: int) -> None:
        """No bulk path: these protocols go through `next_event` (XSole's hot path has it)."""
        return None

    def accept_login(self, imei: str, server_time: int, login_seq: int) -> bytes:
        self._require(SessionState.LOGIN_PENDING)
        self.state = SessionState.ONLINE
        self.imei = imei
        packet, self._login_packet = self._login_packet, None
        assert packet is not None
        if packet.login:
            return self.login_reply(packet, accepted=True)
        # A packet that named its device and carried telemetry: its events come out next.
        reply = self._hand_on(packet)
        return reply.data if reply is not None else b""

    def reject_login(self, status: LoginStatus, server_time: int, login_seq: int) -> Reply:
        self._require(SessionState.LOGIN_PENDING)
        self.state = SessionState.CLOSED
        packet, self._login_packet = self._login_packet, None
        data = self.login_reply(packet, accepted=False) if packet is not None and packet.login else b""
        return Reply(data, True, f"login refused: {status.name}", SessionEnd.LOGIN_REFUSED)

    def acks(self, seqs: list[int], status: AckStatus) -> bytes:
        """The replies of the packets whose last events these acknowledgements complete. Events that
        were not stored (BUSY) are acknowledged nonetheless in the bookkeeping, but their packet's
        reply is withheld, so the device sends it again."""
        out = bytearray()
        for _ in seqs:
            if not self._unacked:
                break
            head = self._unacked[0]
            head.left -= 1
            if status is not AckStatus.STORED and status is not AckStatus.REJECTED:
                head.stored = False
            if head.left == 0:
                self._unacked.popleft()
                self._alarms_in_flight -= head.alarm_kinds
                if head.stored:
                    out += head.reply
                    self._alarms_stored |= head.alarm_kinds
                while self._unacked and self._unacked[0].left == 0:  # answers that waited their turn
                    out += self._unacked.popleft().reply
        return bytes(out)

    def ack(self, seq: int, status: AckStatus = AckStatus.STORED) -> bytes:
        return self.acks([seq], status)

    # -- what a codec writes --------------------------------------------------------------

    def _next_packet(self) -> Decoded | None:
        """The next whole packet in `self._buffer` (consumed from it), None when more bytes are needed.
        Skips what cannot start a packet (adding to `skipped_bytes`); a packet with a bad checksum
        or a form not understood is counted with `_bad` and skipped."""
        raise NotImplementedError

    def login_reply(self, packet: Decoded, *, accepted: bool) -> bytes:
        """The protocol's answer to a login packet (`Decoded.login`)."""
        return b""

    def command(self, seq: int, cmd: int, args: bytes = b"") -> bytes | None:
        """The protocol's bytes for an XSole command code (CONTRACT §4), None when it has no
        equivalent (the command then ends `unsupported` at once). A reply from the device comes
        out as `CommandResult(cmd_seq=seq)`."""
        return None

    def latched(self, active: Iterable[int]) -> frozenset[int]:
        """For protocols whose status word repeats an alarm in every packet until it is cleared (H02,
        the watch protocol): of the alarm kinds `active` now, those to raise. A kind already handed
        out on this connection is not raised again while it stays active, once stored (or while its
        packet is on its way); one that was not stored is raised again with the next packet; one no
        longer active is forgotten, so the next press raises again. One SOS held for minutes is one
        alert, not one per packet."""
        now_active = frozenset(active)
        self._alarms_stored &= now_active
        return now_active - self._alarms_stored - self._alarms_in_flight

    def _bad(self) -> None:
        self.bad_frames += 1
        self.bad_frames_in_a_row += 1
        if self.bad_frames_in_a_row >= MAX_BAD_PACKETS_IN_A_ROW:
            raise TooManyBadPackets(f"{self.bad_frames_in_a_row} bad packets in a row")

    # -- the bookkeeping ------------------------------------------------------------------

    def _take(self, packet: Decoded) -> Login | Reply | None:
        self.bad_frames_in_a_row = 0
        if self.state is SessionState.AWAITING_LOGIN:
            if packet.imei is None:
                return self._close("a packet before the login", SessionEnd.FRAME_BEFORE_LOGIN)
            self.state = SessionState.LOGIN_PENDING
            self._login_packet = packet
            return Login(0, packet.imei, packet.firmware, b"")
        if packet.login or (packet.imei is not None and packet.imei != self.imei):
            return self._close(f"a second login on one connection ({packet.imei})", SessionEnd.MALFORMED_LOGIN)
        return self._hand_on(packet)

    def _hand_on(self, packet: Decoded) -> Reply | None:
        now = time.time()
        kept = [event for event in packet.events if validate(event, now) is None]
        self.rejected += len(packet.events) - len(kept)
        if not kept:
            if self._unacked and packet.reply:  # replies keep the packets' order: devices match them by it
                self._unacked.append(_Handed(0, packet.reply, frozenset()))
                return None
            return Reply(packet.reply, False, "") if packet.reply else None
        kinds = frozenset(event.kind for event in kept if type(event) is Alarm)
        self._alarms_in_flight |= kinds
        self._unacked.append(_Handed(len(kept), packet.reply, kinds))
        self._ready.extend(kept)
        return None

    def _close(self, reason: str, end: SessionEnd) -> Reply:
        self.state = SessionState.CLOSED
        return Reply(b"", True, reason, end)

    def _require(self, state: SessionState) -> None:
        if self.state is not state:
            raise RuntimeError(f"session is {self.state.value}, not {state.value}")


# -- a device's side, for the simulator, the tests and the benchmarks -------------------------


@dataclass(frozen=True, slots=True)
class FromServer:
    """One thing a tracker device understood from the server's bytes."""

    kind: str  # "login" (its login was answered), "ack" (a packet acknowledged) or "command"
    data: bytes  # the server's packet as sent
    command: int | None = None  # for "command": the XSole command code it stands for (CONTRACT §4)
    accepted: bool = True  # for "login": False when refused (the protocols that can say so)


class TrackerDevice:
    """A device speaking a tracker protocol (what `solewatch simulate --protocol NAME`, the
    integration tests and `solewatch bench ingest --protocol NAME` drive). A codec subclasses it;
    every method builds the bytes a real device of that protocol sends, as documented."""

    protocol: ClassVar[str]
    # Whether the server acknowledges each kind of packet: the tests wait for what is acknowledged.
    acks_positions: ClassVar[bool] = True
    acks_alarms: ClassVar[bool] = True
    acks_heartbeats: ClassVar[bool] = True
    # The XSole AlarmKinds `alarm` can build (what the protocol can say of SOS, fall, low battery, tamper).
    alarm_kinds: ClassVar[frozenset[int]] = frozenset()

    def __init__(self, imei: str) -> None:
        self.imei = imei
        self._received = bytearray()

    def login(self) -> bytes:
        """The login packet; b"" for protocols whose every packet names the device (H02, watch)."""
        return b""

    def position(self, *, ts: int, lat_e7: int, lon_e7: int, speed_cms: int, course_ddeg: int, battery: int) -> bytes:
        raise NotImplementedError

    def alarm(self, kind: int, *, ts: int, lat_e7: int, lon_e7: int, battery: int) -> bytes:
        """An alarm packet for an XSole AlarmKind the protocol can say (SOS, fall, low battery, tamper)."""
        raise NotImplementedError

    def heartbeat(self, *, ts: int, battery: int) -> bytes:
        raise NotImplementedError

    def feed(self, data: bytes) -> list[FromServer]:
        """What the server's bytes (any chunking) said, as far as they are whole."""
        raise NotImplementedError

    def answer(self, command: FromServer) -> bytes:
        """The device's reply to a command it received (b"" when the protocol has none)."""
        return b""

    def answer_is_answered(self, command: FromServer) -> bool:
        """Whether the server answers the device's `answer` to `command` (a device matching answers
        by order must then wait for it, as for any packet)."""
        return False

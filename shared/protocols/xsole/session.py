"""One device connection's protocol state, sans-IO (after h11's Connection).

The listener feeds received bytes with `receive_data` and drains `next_event`.
Login checks and durability are the caller's business: the session pauses
after a LOGIN until `accept_login`/`reject_login`, and telemetry events come
out for the caller to store and then ACK with `ack`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from shared.protocols.xsole.bulk import TelemetryRun, take_telemetry
from shared.protocols.xsole.constants import AckStatus, FrameType, LoginStatus
from shared.protocols.xsole.framing import BadCrc, FrameBuffer, XSoleProtocolError, encode_frame
from shared.protocols.xsole.messages import (
    Activity,
    Alarm,
    CommandResult,
    DeviceEvent,
    Heartbeat,
    Login,
    LoginAck,
    MalformedFrame,
    Position,
    decode,
    encode,
    encode_ack,
    encode_acks,
)

MAX_BAD_FRAMES_IN_A_ROW = 10
_TELEMETRY = (Heartbeat, Position, Activity, Alarm, CommandResult)
# Only these get ACK 1 when cut short; a short LOGIN or server-only frame is
# still an unsupported type here, whatever its payload.
_TELEMETRY_TYPES = frozenset(
    (
        FrameType.HEARTBEAT,
        FrameType.POSITION,
        FrameType.ACTIVITY,
        FrameType.ALARM,
        FrameType.COMMAND_RESULT,
    )
)


class SessionState(enum.Enum):
    AWAITING_LOGIN = "awaiting_login"
    LOGIN_PENDING = "login_pending"  # LOGIN handed out, waiting for the caller's verdict
    ONLINE = "online"
    CLOSED = "closed"


class SessionEnd(enum.Enum):
    """Why the session closed itself (contract §1 rules 1 and 4): for the caller's logs and metrics."""

    FRAME_BEFORE_LOGIN = "frame_before_login"
    MALFORMED_LOGIN = "malformed_login"
    LOGIN_REFUSED = "login_refused"
    BAD_FRAMES = "bad_frames"
    BAD_FRAMING = "bad_framing"  # a length outside 2..1024


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes the session needs sent at once (maybe none), then maybe a close (`end` says why)."""

    data: bytes
    close: bool
    reason: str
    end: SessionEnd | None = None


_ONLINE = SessionState.ONLINE
_AWAITING_LOGIN = SessionState.AWAITING_LOGIN
_TELEMETRY_CLASSES = frozenset(_TELEMETRY)


class DeviceSession:
    """One byte stream's protocol state.

    `relogin=True` hands a LOGIN that comes while online to the caller like a
    first one (the session waits for its verdict again), for transports where
    a device cannot open a new connection to log in again (MQTT); otherwise
    such a LOGIN gets ACK 2, as a second LOGIN on one TCP connection does.
    """

    __slots__ = ("_frames", "_relogin", "bad_frames", "bad_frames_in_a_row", "imei", "state")
    protocol: ClassVar[str] = "xsole"
    rejected: ClassVar[int] = 0  # values out of range get ACK status 1 from the ingest step, not dropped here

    def __init__(self, *, relogin: bool = False) -> None:
        self._frames = FrameBuffer()
        self._relogin = relogin
        self.state = SessionState.AWAITING_LOGIN
        self.imei: str | None = None
        self.bad_frames_in_a_row = 0
        self.bad_frames = 0  # dropped for a bad CRC or version, since the connection opened

    def receive_data(self, data: bytes) -> None:
        self._frames.feed(data)

    @property
    def skipped_bytes(self) -> int:
        return self._frames.skipped_bytes

    @property
    def drained(self) -> bool:
        """Every byte received has been handed out: nothing comes out until more are fed."""
        return self._frames.buffered == 0

    def next_event(self) -> Login | DeviceEvent | Reply | None:
        """The next thing to act on, or None (need more data, paused or closed)."""
        frames = self._frames
        while self.state is _ONLINE or self.state is _AWAITING_LOGIN:
            try:
                frame = frames.next_frame()
            except XSoleProtocolError as exc:
                return self._close(str(exc), SessionEnd.BAD_FRAMING)
            if frame is None:
                return None
            if type(frame) is BadCrc:
                self.bad_frames += 1
                self.bad_frames_in_a_row += 1
                if self.bad_frames_in_a_row >= MAX_BAD_FRAMES_IN_A_ROW:
                    return self._close(f"{self.bad_frames_in_a_row} bad frames in a row", SessionEnd.BAD_FRAMES)
                continue
            self.bad_frames_in_a_row = 0
            event = decode(frame)  # type: ignore[arg-type]  # a RawFrame: BadCrc was skipped above
            if self.state is _ONLINE and type(event) in _TELEMETRY_CLASSES:
                return event  # type: ignore[return-value]  # the hot path: the type check above narrows it
            if self.state is _AWAITING_LOGIN:
                if isinstance(event, Login):
                    self.state = SessionState.LOGIN_PENDING
                    return event
                if isinstance(event, MalformedFrame) and event.type == FrameType.LOGIN:
                    return self._close(f"malformed LOGIN: {event.reason}", SessionEnd.MALFORMED_LOGIN)
                return self._close(
                    "frame before login", SessionEnd.FRAME_BEFORE_LOGIN, encode_ack(frame.seq, AckStatus.NOT_LOGGED_IN)
                )
            if self._relogin and isinstance(event, Login):
                self.state = SessionState.LOGIN_PENDING
                return event
            if isinstance(event, MalformedFrame) and event.type in _TELEMETRY_TYPES:
                return Reply(encode_ack(event.seq, AckStatus.REJECTED), False, event.reason)
            # A second LOGIN, a server-only type or an unknown one.
            return Reply(encode_ack(frame.seq, AckStatus.UNSUPPORTED), False, f"unsupported type 0x{frame.type:02x}")
        return None

    def take_telemetry(self, received_at: float, limit: int) -> TelemetryRun | None:
        """The hot path, while online: decode up to `limit` buffered in-range
        telemetry frames in one call (see `bulk.take_telemetry`). Returns the
        run of frames taken, or None; `next_event` then handles whatever
        stopped it."""
        if self.state is not _ONLINE or limit <= 0:
            return None
        frames = self._frames
        buf, pos = frames.unread()
        end, run = take_telemetry(buf, pos, received_at, limit)
        if run is None:
            return None
        frames.consumed_to(end)
        self.bad_frames_in_a_row = 0
        return run

    def accept_login(self, imei: str, server_time: int, login_seq: int) -> bytes:
        self._require(SessionState.LOGIN_PENDING)
        self.state = SessionState.ONLINE
        self.imei = imei
        return encode(LoginAck(login_seq, LoginStatus.ACCEPTED, server_time))

    def reject_login(self, status: LoginStatus, server_time: int, login_seq: int) -> Reply:
        self._require(SessionState.LOGIN_PENDING)
        self.state = SessionState.CLOSED
        return Reply(
            encode(LoginAck(login_seq, status, server_time)),
            True,
            f"login refused: {status.name}",
            SessionEnd.LOGIN_REFUSED,
        )

    def resume(self, imei: str) -> None:
        """Continue a login accepted earlier on another byte stream (an MQTT session kept in
        the cache): online at once, as `imei`, without a LOGIN on this stream."""
        self._require(SessionState.AWAITING_LOGIN)
        self.state = SessionState.ONLINE
        self.imei = imei

    def ack(self, seq: int, status: AckStatus = AckStatus.STORED) -> bytes:
        return encode_ack(seq, status)

    def acks(self, seqs: list[int], status: AckStatus) -> bytes:
        """The ACK frames of several frames, back to back (one per frame)."""
        return encode_acks(seqs, status)

    def command(self, seq: int, cmd: int, args: bytes = b"") -> bytes:
        """A COMMAND frame. The caller picks the seq: it must stay the same when the
        command is sent again after a reconnect, so the result can be matched to it."""
        return encode_frame(FrameType.COMMAND, seq & 0xFFFF, bytes((cmd, len(args))) + args)

    def _close(self, reason: str, end: SessionEnd, data: bytes = b"") -> Reply:
        self.state = SessionState.CLOSED
        return Reply(data, True, reason, end)

    def _require(self, state: SessionState) -> None:
        if self.state is not state:
            raise RuntimeError(f"session is {self.state.value}, not {state.value}")

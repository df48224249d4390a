"""Typed XSole events for every frame type, in both directions, and their codec.

Fields keep the wire's integer units (lat_e7 is 1e-7 degree, speed_cms is cm/s)
so that a decoded frame re-encodes to the same bytes; properties give the
human units.

The frames that arrive by the tens of thousands per second (telemetry, ACKs)
are typed NamedTuples: as immutable as a frozen dataclass, four times cheaper
to build, and equal only to an event of the same type. The rare ones (LOGIN,
COMMAND, refusals) are frozen slotted dataclasses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID, FrameType
from shared.protocols.xsole.framing import RawFrame, encode_frame


def imei_to_bcd(imei: str) -> bytes:
    """15 IMEI digits as 8 BCD bytes, led by a zero nibble."""
    if len(imei) != 15 or not imei.isdigit():
        raise ValueError(f"an IMEI is 15 digits, got {imei!r}")
    return bytes.fromhex("0" + imei)


def imei_from_bcd(raw: bytes) -> str | None:
    """The IMEI in 8 BCD bytes, or None when they are not 0 + 15 decimal digits."""
    digits = raw.hex()
    if digits[0] != "0" or not digits[1:].isdigit():
        return None
    return digits[1:]


@dataclass(frozen=True, slots=True)
class Login:
    seq: int
    imei: str
    firmware: int
    token: bytes


class Heartbeat(NamedTuple):
    seq: int
    ts: int
    battery: int
    rssi: int


class Position(NamedTuple):
    seq: int
    ts: int
    lat_e7: int
    lon_e7: int
    alt_m: int
    speed_cms: int
    course_ddeg: int
    sats: int
    hdop_d: int
    battery: int
    flags: int

    @property
    def fix_valid(self) -> bool:
        return bool(self.flags & FLAG_FIX_VALID)

    @property
    def buffered(self) -> bool:
        return bool(self.flags & FLAG_BUFFERED)


class Activity(NamedTuple):
    seq: int
    ts: int
    steps: int
    state: int
    cadence: int
    battery: int
    flags: int

    @property
    def buffered(self) -> bool:
        return bool(self.flags & FLAG_BUFFERED)


class Alarm(NamedTuple):
    seq: int
    ts: int
    kind: int
    lat_e7: int
    lon_e7: int
    battery: int
    flags: int

    @property
    def fix_valid(self) -> bool:
        return bool(self.flags & FLAG_FIX_VALID)

    @property
    def buffered(self) -> bool:
        return bool(self.flags & FLAG_BUFFERED)


class CommandResult(NamedTuple):
    seq: int
    cmd_seq: int
    status: int


class LoginAck(NamedTuple):
    seq: int
    status: int
    server_time: int


class Ack(NamedTuple):
    seq: int
    status: int


@dataclass(frozen=True, slots=True)
class Command:
    seq: int
    cmd: int
    args: bytes = b""


@dataclass(frozen=True, slots=True)
class UnsupportedFrame:
    """A well-framed frame of a type the receiver does not take."""

    seq: int
    type: int


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """A well-framed frame of a known type whose payload is too short to decode."""

    seq: int
    type: int
    reason: str


def _same_type_eq(self: tuple[Any, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _same_type_ne(self: tuple[Any, ...], other: object) -> bool:
    return not _same_type_eq(self, other)


def _typed_hash(self: tuple[Any, ...]) -> int:
    return hash((type(self).__name__, tuple(self)))


# NamedTuples compare as plain tuples, so a Heartbeat would equal an Ack with the
# same values; events compare (and hash) by type as well.
for _event in (Heartbeat, Position, Activity, Alarm, CommandResult, LoginAck, Ack):
    _event.__eq__ = _same_type_eq  # type: ignore[method-assign]  # on purpose: see the comment above
    _event.__ne__ = _same_type_ne  # type: ignore[method-assign,assignment]  # on purpose: see the comment above
    _event.__hash__ = _typed_hash  # type: ignore[method-assign]  # on purpose: see the comment above

DeviceEvent = Login | Heartbeat | Position | Activity | Alarm | CommandResult
ServerEvent = LoginAck | Ack | Command

# type -> (event class, payload layout). A longer payload than the layout is
# accepted and its tail ignored, so newer firmware may append fields.
LAYOUTS: dict[int, tuple[type, struct.Struct]] = {
    FrameType.HEARTBEAT: (Heartbeat, struct.Struct(">IBb")),
    FrameType.POSITION: (Position, struct.Struct(">IiihHHBBBB")),
    FrameType.ACTIVITY: (Activity, struct.Struct(">IHBBBB")),
    FrameType.ALARM: (Alarm, struct.Struct(">IBiiBB")),
    FrameType.COMMAND_RESULT: (CommandResult, struct.Struct(">HB")),
    FrameType.LOGIN_ACK: (LoginAck, struct.Struct(">BI")),
    FrameType.ACK: (Ack, struct.Struct(">B")),
}
_LOGIN = struct.Struct(">8sH16s")
_COMMAND = struct.Struct(">BB")
_TYPE_OF = {cls: frame_type for frame_type, (cls, _) in LAYOUTS.items()}
_new_tuple = tuple.__new__  # builds a NamedTuple without the Python-level __new__


def decode(frame: RawFrame) -> DeviceEvent | ServerEvent | UnsupportedFrame | MalformedFrame:
    """The typed event carried by one CRC-checked frame. Never raises."""
    payload = frame.payload
    layout = LAYOUTS.get(frame.type)
    if layout is not None:
        cls, fmt = layout
        if len(payload) < fmt.size:
            return MalformedFrame(frame.seq, frame.type, f"payload of {len(payload)} bytes, need {fmt.size}")
        return _new_tuple(cls, (frame.seq, *fmt.unpack_from(payload)))
    if frame.type == FrameType.LOGIN:
        if len(payload) < _LOGIN.size:
            return MalformedFrame(frame.seq, frame.type, f"payload of {len(payload)} bytes, need {_LOGIN.size}")
        bcd, firmware, token = _LOGIN.unpack_from(payload)
        imei = imei_from_bcd(bcd)
        if imei is None:
            return MalformedFrame(frame.seq, frame.type, "IMEI is not BCD")
        return Login(frame.seq, imei, firmware, token)
    if frame.type == FrameType.COMMAND:
        if len(payload) < _COMMAND.size or len(payload) < _COMMAND.size + payload[1]:
            return MalformedFrame(frame.seq, frame.type, "command arguments cut short")
        cmd, argc = _COMMAND.unpack_from(payload)
        return Command(frame.seq, cmd, bytes(payload[2 : 2 + argc]))
    return UnsupportedFrame(frame.seq, frame.type)


def encode(event: DeviceEvent | ServerEvent) -> bytes:
    """The complete frame (header, payload, CRC) for an event."""
    if isinstance(event, Login):
        payload = _LOGIN.pack(imei_to_bcd(event.imei), event.firmware, event.token)
        return encode_frame(FrameType.LOGIN, event.seq, payload)
    if isinstance(event, Command):
        payload = _COMMAND.pack(event.cmd, len(event.args)) + event.args
        return encode_frame(FrameType.COMMAND, event.seq, payload)
    frame_type = _TYPE_OF[type(event)]
    _, fmt = LAYOUTS[frame_type]
    return encode_frame(frame_type, event.seq, fmt.pack(*event[1:]))


class _StoredAcks(dict[int, bytes]):
    """seq -> the ACK status 0 frame for it, built the first time it is asked for."""

    def __missing__(self, seq: int) -> bytes:
        ack = self[seq] = encode_frame(FrameType.ACK, seq, b"\x00")
        return ack


_stored_acks = _StoredAcks()
_stored_ack_of = _stored_acks.__getitem__


def encode_ack(seq: int, status: int) -> bytes:
    """An ACK frame. The status-0 ones, one per stored frame, are built once per seq."""
    if status == 0:
        return _stored_acks[seq]
    return encode_frame(FrameType.ACK, seq, bytes((status,)))


def encode_acks(seqs: list[int], status: int) -> bytes:
    """The ACK frames for several frames, back to back."""
    if status == 0:
        return b"".join(map(_stored_ack_of, seqs))
    return b"".join([encode_ack(seq, status) for seq in seqs])

"""XSole v1, the insoles' wire protocol, as sans-IO code: bytes in, typed events out.

Nothing here touches a socket, a clock or asyncio; callers pass the time in.
"""

from shared.protocols.xsole.constants import (
    AckStatus,
    ActivityState,
    AlarmKind,
    CommandCode,
    CommandStatus,
    FrameType,
    LoginStatus,
)
from shared.protocols.xsole.framing import (
    MAX_LENGTH,
    MIN_LENGTH,
    BadCrc,
    FrameBuffer,
    RawFrame,
    XSoleProtocolError,
    encode_frame,
)
from shared.protocols.xsole.messages import (
    Ack,
    Activity,
    Alarm,
    Command,
    CommandResult,
    DeviceEvent,
    Heartbeat,
    Login,
    LoginAck,
    MalformedFrame,
    Position,
    ServerEvent,
    UnsupportedFrame,
    decode,
    encode,
    imei_from_bcd,
    imei_to_bcd,
)
from shared.protocols.xsole.session import DeviceSession, Reply, SessionEnd, SessionState
from shared.protocols.xsole.validation import validate

__all__ = [
    "MAX_LENGTH",
    "MIN_LENGTH",
    "Ack",
    "AckStatus",
    "Activity",
    "ActivityState",
    "Alarm",
    "AlarmKind",
    "BadCrc",
    "Command",
    "CommandCode",
    "CommandResult",
    "CommandStatus",
    "DeviceEvent",
    "DeviceSession",
    "FrameBuffer",
    "FrameType",
    "Heartbeat",
    "Login",
    "LoginAck",
    "LoginStatus",
    "MalformedFrame",
    "Position",
    "RawFrame",
    "Reply",
    "ServerEvent",
    "SessionEnd",
    "SessionState",
    "UnsupportedFrame",
    "XSoleProtocolError",
    "decode",
    "encode",
    "encode_frame",
    "imei_from_bcd",
    "imei_to_bcd",
    "validate",
]

"""Numbers fixed by the XSole v1 contract."""

from enum import IntEnum

MAGIC = b"XS"
VERSION = 0x01


class FrameType(IntEnum):
    LOGIN = 0x01
    HEARTBEAT = 0x02
    POSITION = 0x10
    ACTIVITY = 0x11
    ALARM = 0x12
    COMMAND_RESULT = 0x13
    ACK = 0x80
    LOGIN_ACK = 0x81
    COMMAND = 0x90


class LoginStatus(IntEnum):
    ACCEPTED = 0
    UNKNOWN_DEVICE = 1
    BAD_TOKEN = 2
    DISABLED = 3


class AckStatus(IntEnum):
    STORED = 0
    REJECTED = 1
    UNSUPPORTED = 2
    NOT_LOGGED_IN = 3
    BUSY = 4


class AlarmKind(IntEnum):
    SOS = 1
    FALL = 2
    NO_MOTION = 3
    LOW_BATTERY = 4
    OFF_FOOT = 5
    TAMPER = 6

    @property
    def alert_kind(self) -> str:
        """The alert kind's name in the REST API (`no_motion`, not `NO_MOTION`)."""
        return self.name.lower()


class ActivityState(IntEnum):
    UNKNOWN = 0
    STILL = 1
    WALKING = 2
    RUNNING = 3
    LYING = 4
    OFF_FOOT = 5


class CommandCode(IntEnum):
    LOCATE_NOW = 1
    SET_INTERVAL = 2
    VIBRATE = 3
    ALARM_ACKNOWLEDGED = 4
    REBOOT = 5


class CommandStatus(IntEnum):
    DONE = 0
    FAILED = 1
    UNSUPPORTED = 2


FLAG_FIX_VALID = 0x01
FLAG_BUFFERED = 0x02

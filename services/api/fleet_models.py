"""Request and response bodies of the fleet's routes (services/api/fleet.py, commands.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.api.models import ShortName

CommandName = Literal["locate-now", "set-interval", "vibrate", "alarm-acknowledged", "reboot"]
CommandState = Literal["queued", "sent", "done", "failed", "unsupported", "expired"]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


class DeviceUpdate(BaseModel):
    name: ShortName | None = Field(None, description="a new name; absent or null leaves it")
    enabled: bool | None = Field(
        None,
        strict=True,  # JSON's 0 is not false
        description="false closes the device's connection and refuses its LOGIN (status 3) until true",
    )
    model_config = _examples({"name": "Alice (night shift)"}, {"enabled": False})


class DeviceToken(BaseModel):
    token: str = Field(description="the device's new secret, 32 hex characters: shown only in this response")
    model_config = _examples({"token": "000102030405060708090a0b0c0d0e0f"})


# Each command's arguments as hex, in the schema itself (one body shape per command), so that
# what the spec accepts is what the route accepts. The layouts: shared/protocols/xsole/command_args.py.
_HEX = "[0-9a-fA-F]"
_NONZERO = "[1-9a-fA-F]"
_NO_ARGS = "^$"
_U16_NOT_ZERO = f"^(?:{_NONZERO}{_HEX}{{3}}|0{_NONZERO}{_HEX}{{2}}|00{_NONZERO}{_HEX}|000{_NONZERO})$"
_OPTIONAL_U8_NOT_ZERO = f"^(?:|0{_NONZERO}|{_NONZERO}{_HEX})$"


class LocateNowCommand(BaseModel):
    command: Literal["locate-now"]
    args: str = Field("", pattern=_NO_ARGS, description="none")
    model_config = _examples({"command": "locate-now"})


class SetIntervalCommand(BaseModel):
    command: Literal["set-interval"]
    args: str = Field(
        pattern=_U16_NOT_ZERO, description="the position interval in seconds, 1 to 65535: 2 bytes big-endian, in hex"
    )
    model_config = _examples({"command": "set-interval", "args": "003c"})


class VibrateCommand(BaseModel):
    command: Literal["vibrate"]
    args: str = Field(
        "", pattern=_OPTIONAL_U8_NOT_ZERO, description="none, or the seconds to vibrate, 1 to 255: 1 byte, in hex"
    )
    model_config = _examples({"command": "vibrate"}, {"command": "vibrate", "args": "05"})


class AlarmAcknowledgedCommand(BaseModel):
    command: Literal["alarm-acknowledged"]
    args: str = Field("", pattern=_NO_ARGS, description="none")
    model_config = _examples({"command": "alarm-acknowledged"})


class RebootCommand(BaseModel):
    command: Literal["reboot"]
    args: str = Field("", pattern=_NO_ARGS, description="none")
    model_config = _examples({"command": "reboot"})


CommandIn = Annotated[
    LocateNowCommand | SetIntervalCommand | VibrateCommand | AlarmAcknowledgedCommand | RebootCommand,
    Field(discriminator="command"),
]


class CommandOut(BaseModel):
    id: int
    command: CommandName
    args: str = Field(description="argument bytes as hex")
    status: CommandState = Field(
        description="queued; sent to the device; its answer (done, failed, unsupported); or expired:"
        " not sent within SOLEWATCH_COMMAND_TTL, and never sent afterwards"
    )
    created_at: str
    sent_at: str | None = Field(None, description="when it last went to the device")
    completed_at: str | None = Field(None, description="when the device answered")
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 12,
                    "command": "set-interval",
                    "args": "003c",
                    "status": "done",
                    "created_at": "2026-01-01T00:00:00.000Z",
                    "sent_at": "2026-01-01T00:00:00.120Z",
                    "completed_at": "2026-01-01T00:00:01.300Z",
                }
            ]
        }
    )


class CommandPage(BaseModel):
    items: list[CommandOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")

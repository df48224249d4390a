"""Request and response bodies of the fleet's routes (services/api/fleet.py, commands.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.api.models import ShortName

CommandName = Literal["locate-now", "set-interval", "vibrate", "alarm-acknowledged", "reboot"]
CommandState = Literal["queued", "sent", "done", "failed", "unsupported", "expired"]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


class DeviceUpdate(BaseModel):
    name: ShortName | None = Field(None, description="a new name; absent or null leaves it")
    enabled: bool | None = Field(
        None, description="false closes the device's connection and refuses its LOGIN (status 3) until true"
    )
    model_config = _examples({"name": "Alice (night shift)"}, {"enabled": False})


class DeviceToken(BaseModel):
    token: str = Field(description="the device's new secret, 32 hex characters: shown only in this response")
    model_config = _examples({"token": "000102030405060708090a0b0c0d0e0f"})


class CommandIn(BaseModel):
    command: CommandName
    args: str = Field(
        "",
        pattern=r"^(?:[0-9a-fA-F]{2}){0,255}$",
        description="argument bytes as hex: set-interval takes 2 (seconds, u16 big-endian, 1 to 65535);"
        " vibrate none or 1 (seconds, 1 to 255); the others none",
    )
    model_config = _examples({"command": "locate-now"}, {"command": "set-interval", "args": "003c"})


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

"""What each downlink command takes as `args`: solewatch's layouts, which the contract leaves open.

- `locate-now`, `alarm-acknowledged`, `reboot`: no arguments;
- `set-interval`: the position interval in seconds, u16 big-endian, 1 to 65535;
- `vibrate`: nothing (the insole's default) or one byte, the seconds to vibrate, 1 to 255.
"""

from __future__ import annotations

from shared.protocols.xsole.constants import CommandCode


def command_name(code: int) -> str:
    """The API's name of a command code: `locate-now` for LOCATE_NOW."""
    return CommandCode(code).name.lower().replace("_", "-")


def command_code(name: str) -> CommandCode:
    """The code of an API command name; KeyError for an unknown one."""
    return CommandCode[name.upper().replace("-", "_")]


def command_args_problem(code: CommandCode, args: bytes) -> str | None:
    """Why `args` do not fit the command, or None when they do."""
    if code is CommandCode.SET_INTERVAL:
        if len(args) != 2 or args == b"\x00\x00":
            return "set-interval takes 2 bytes: the interval in seconds, 1 to 65535 (u16 big-endian)"
        return None
    if code is CommandCode.VIBRATE:
        if len(args) > 1 or args == b"\x00":
            return "vibrate takes no arguments or 1 byte: the seconds to vibrate, 1 to 255"
        return None
    if args:
        return f"{command_name(code)} takes no arguments"
    return None

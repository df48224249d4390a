"""solewatch's commands (CONTRACT §4) as watch commands. The watch answers each with a packet of the
same keyword (`[3G*5678901234*0002*CR]`), which is how an answer is matched to its command.

| solewatch            | watch                 | what the watch does                                       |
|----------------------|-----------------------|-----------------------------------------------------------|
| locate-now           | `CR`                  | GPS on at once, a position every 20 s for 3 minutes       |
| set-interval         | `UPLOAD,<seconds>`    | the position interval; the watch's minimum is 60 s        |
| vibrate              | `FIND`                | rings (and vibrates) for a minute, a button press stops it |
| alarm-acknowledged   | `MESSAGE,<UTF-16 hex>`| shows "Alarm acknowledged" on the screen                  |
| reboot               | `RESET`               | restarts                                                  |
"""

from __future__ import annotations

import struct

from shared.protocols.xsole.constants import CommandCode

MIN_INTERVAL_S = 60  # the manufacturer's minimum for UPLOAD
ACKNOWLEDGED_TEXT = "Alarm acknowledged"

KEYWORDS: dict[CommandCode, str] = {
    CommandCode.LOCATE_NOW: "CR",
    CommandCode.SET_INTERVAL: "UPLOAD",
    CommandCode.VIBRATE: "FIND",
    CommandCode.ALARM_ACKNOWLEDGED: "MESSAGE",
    CommandCode.REBOOT: "RESET",
}
CODES: dict[str, CommandCode] = {keyword: code for code, keyword in KEYWORDS.items()}


def command_content(cmd: int, args: bytes) -> str | None:
    """The content of the watch command for an XSole command code, None when the watch has none.
    ValueError for arguments that do not fit the command (shared/protocols/xsole/command_args.py)."""
    try:
        code = CommandCode(cmd)
    except ValueError:
        return None
    keyword = KEYWORDS[code]
    if code is CommandCode.SET_INTERVAL:
        if len(args) != 2:
            raise ValueError("set-interval takes the interval in seconds, u16 big-endian")
        (seconds,) = struct.unpack(">H", args)
        return f"{keyword},{max(seconds, MIN_INTERVAL_S)}"
    if code is CommandCode.ALARM_ACKNOWLEDGED:
        # The watch shows MESSAGE text given as UTF-16BE in hex (the manufacturer's `597D0031...`).
        return f"{keyword},{ACKNOWLEDGED_TEXT.encode('utf-16-be').hex().upper()}"
    # vibrate's optional duration has no equivalent: FIND rings for the watch's own minute.
    return keyword

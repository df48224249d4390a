"""H02 downlink commands for XSole's command codes (CONTRACT §4), and how their answers come back.

`*HQ,<id>,<CMD>,<HHMMSS>[,<param>...]#`, HHMMSS the server's UTC time, as the Sinotrack protocol
text documents the center's commands and Traccar's H02ProtocolEncoder writes them:

- locate-now → `D1,HHMMSS,30,1`: "send data to the server ... immediately"; with a count of 1 the
  device answers with one general message (a V1 position), which completes the command;
- set-interval → `S71,HHMMSS,22,<seconds>` (Traccar's periodic-position command); the device
  confirms with `V4,S71,...`;
- alarm-acknowledged → `R7,HHMMSS`, "clean out alarm": the device clears the alarm bits it latches
  in its status word; it sends no answer;
- reboot → `R1,HHMMSS`, "cold start"; no answer;
- vibrate: H02 devices have no such command.
"""

from __future__ import annotations

import time

from shared.protocols.xsole.constants import CommandCode

LOCATE = "D1"
SET_INTERVAL = "S71"
CLEAR_ALARMS = "R7"
COLD_START = "R1"
CODE_OF = {LOCATE: CommandCode.LOCATE_NOW, SET_INTERVAL: CommandCode.SET_INTERVAL,
           CLEAR_ALARMS: CommandCode.ALARM_ACKNOWLEDGED, COLD_START: CommandCode.REBOOT}  # fmt: skip
NAME_OF = {code: name for name, code in CODE_OF.items()}
ANSWERED = frozenset((LOCATE, SET_INTERVAL))  # the others get no answer from the device


def hhmmss(ts: float) -> str:
    return time.strftime("%H%M%S", time.gmtime(ts))


def command_text(imei: str, cmd: int, args: bytes, now: float) -> tuple[str, str] | None:
    """(the command's name, its bytes as text) for an XSole command code, None when H02 has none."""
    try:
        name = NAME_OF.get(CommandCode(cmd))
    except ValueError:  # not an XSole command code
        return None
    if name is None:
        return None
    params: tuple[str, ...] = ()
    if name == LOCATE:
        params = ("30", "1")  # an interval in the documented 30-65535 range, ignored with a count of 1
    elif name == SET_INTERVAL:
        if len(args) != 2:
            return None
        params = ("22", str(int.from_bytes(args, "big")))
    return name, ",".join(("*HQ", imei, name, hhmmss(now), *params)) + "#"

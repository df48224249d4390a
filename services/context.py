"""What request handlers and consumers share in one process: settings and the ports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.bus import Bus
from shared.cache import Cache
from shared.config import Settings
from shared.store import ApiStore


class CommandSender(Protocol):
    async def send_command(self, *, device_id: int, cmd: int, args: bytes = b"") -> int:
        """Queue a COMMAND for a device durably and deliver it as soon as it is connected; the command id."""


@dataclass
class ServiceContext:
    settings: Settings
    store: ApiStore  # the notifications service, sharing the context, uses a part (NotificationsStore)
    cache: Cache
    bus: Bus
    commands: CommandSender

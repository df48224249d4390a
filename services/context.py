"""What request handlers and consumers share in one process: settings and the ports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.bus import Bus
from shared.cache import Cache
from shared.config import Settings
from shared.store import Store


class CommandSender(Protocol):
    async def send_command(self, *, device_id: int, cmd: int, args: bytes = b"") -> int:
        """Queue a COMMAND for a device durably and deliver it as soon as it is connected; the command id."""


@dataclass
class ServiceContext:
    settings: Settings
    store: Store  # also an AccountStore and an AlertStore
    cache: Cache
    bus: Bus
    commands: CommandSender

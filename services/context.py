"""What request handlers and consumers share in one process: settings and the ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from services.visibility.gate import VisiblePositions
from shared.bus import Bus
from shared.cache import Cache
from shared.config import Settings
from shared.live_feed import LiveFeed
from shared.store import ApiStore
from shared.store.audit import AuditEntry


class CommandSender(Protocol):
    """The way from any process to the listener that holds a device."""

    async def send_command(
        self, *, device_id: int, cmd: int, args: bytes = b"", audit: AuditEntry | None = None
    ) -> int:
        """Queue a COMMAND for a device durably (unsent after SOLEWATCH_COMMAND_TTL it expires) and
        deliver it as soon as it is connected; the command id."""

    async def revoke_device(self, imei: str) -> None:
        """The device was disabled, re-keyed or retired (already stored): whichever listener holds it
        closes its link, so its next LOGIN is checked against the store as it now is."""


@dataclass
class ServiceContext:
    settings: Settings
    store: ApiStore  # the notifications service, sharing the context, uses a part (NotificationsStore)
    cache: Cache
    bus: Bus
    commands: CommandSender
    # Positions straight from a listener in this process (the all-in-one mode), else from the bus.
    live: LiveFeed | None = None
    # Where workers were, as CONTRACT §8 lets them be seen: `store` has no positions of its own.
    positions: VisiblePositions = field(init=False)

    def __post_init__(self) -> None:
        self.positions = VisiblePositions(self.store)

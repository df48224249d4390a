"""The outbox: messages written with the changes they announce, for the relay to move to the bus.

Every adapter write that announces something (a telemetry commit, an alarm, an
alert change) queues its message in the same write; the relay
(shared/bus/outbox.py) publishes and then removes them, in commit order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    topic: str
    payload: bytes


class OutboxStore(Protocol):
    # Called on the event loop after each committed write, so the outbox relay
    # can move new entries at once instead of at its next poll.
    on_write: Callable[[], None] | None

    async def outbox_pending(self, limit: int, *, after_id: int = 0) -> list[OutboxEntry]:
        """Outbox entries in commit order, from the first id above `after_id`."""

    async def outbox_remove(self, ids: Sequence[int]) -> None:
        """Remove relayed entries; ids not (or no longer) queued are ignored."""

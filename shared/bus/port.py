"""What solewatch needs from a message bus: durable publish, at-least-once delivery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    # Stable across redeliveries, so consumers can make their effects idempotent.
    message_id: str


Handler = Callable[[Message], Awaitable[None]]


class Bus(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def publish(self, topic: str, payload: bytes, *, message_id: str) -> None:
        """Return only once the message is safe: confirmed durable, or fully handled."""

    def subscribe(self, consumer: str, topics: list[str], handler: Handler, *, broadcast: bool = False) -> None:
        """Deliver every message on `topics` to `handler`, at least once.

        A handler that raises gets the message again with backoff; after the
        bus's attempt limit the message is dead-lettered and delivery goes on.
        Processes subscribing under the same `consumer` share its messages
        (competing consumers), unless `broadcast`: then every process gets
        every message, best effort, from the moment it subscribes (for
        wake-up signals whose content is durable elsewhere).
        """

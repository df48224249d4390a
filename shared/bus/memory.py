"""The in-process bus of the all-in-one mode.

Durability comes from the store's outbox, not from the bus: `publish` returns
only after every subscriber has handled the message, and only then does the
relay remove the outbox entry, so a crash in between replays it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import orjson
from prometheus_client import Counter

from shared.bus.port import Handler, Message
from shared.logging import get_logger

log = get_logger("solewatch.bus")

handler_failures = Counter("bus_handler_failures_total", "Bus handler calls that raised", ["consumer"])
dead_letters = Counter("bus_dead_letters_total", "Messages given up on after every retry", ["consumer"])


class MemoryBus:
    name = "bus"

    def __init__(self, *, max_attempts: int = 5, first_backoff: float = 0.1):
        self._subscribers: dict[str, list[tuple[str, Handler]]] = defaultdict(list)
        self._max_attempts = max_attempts
        self._first_backoff = first_backoff

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def subscribe(self, consumer: str, topics: list[str], handler: Handler, *, broadcast: bool = False) -> None:
        # One process: every subscription is both shared and broadcast.
        for topic in topics:
            self._subscribers[topic].append((consumer, handler))

    async def publish(self, topic: str, payload: bytes, *, message_id: str) -> None:
        message = Message(topic, payload, message_id)
        subscribers = self._subscribers.get(topic, [])
        if subscribers:
            # One slow consumer must not hold back the others.
            await asyncio.gather(*(self._deliver(consumer, handler, message) for consumer, handler in subscribers))

    async def _deliver(self, consumer: str, handler: Handler, message: Message) -> None:
        delay = self._first_backoff
        for attempt in range(1, self._max_attempts + 1):
            try:
                await handler(message)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                handler_failures.labels(consumer).inc()
                log.exception(
                    "handler_failed",
                    consumer=consumer,
                    topic=message.topic,
                    message_id=message.message_id,
                    attempt=attempt,
                )
                if attempt < self._max_attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
        dead_letters.labels(consumer).inc()
        log.error(
            "dead_lettered",
            consumer=consumer,
            topic=message.topic,
            message_id=message.message_id,
            payload=orjson.loads(message.payload) if message.payload[:1] in (b"{", b"[") else None,
        )

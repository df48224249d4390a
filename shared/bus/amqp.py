"""The bus on RabbitMQ (aio-pika), for the distributed mode.

- `publish` returns once the broker has confirmed the message (publisher
  confirms on a channel of its own), persistent, into durable quorum queues:
  what the caller then acknowledges or deletes is safe on the broker.
- Each subscription consumes its own queue on its own channel, one message at
  a time in delivery order, and acks a message only after its handler
  returned. A handler that raises gets the message back after a backoff; the
  queue's delivery limit dead-letters it after the last attempt (see
  amqp_topology.py), so a poison message delays nothing behind it for long
  and is kept for an operator, not lost.
- The connection is robust (`connect_robust`): after a broker restart or a cut
  link, channels, queues and consumers come back by themselves, tried again every
  `reconnect_interval` seconds (SOLEWATCH_AMQP_RECONNECT_INTERVAL). Meanwhile
  `publish` raises `BusUnavailable` and `check_ready` says why; messages not
  acked before the cut are redelivered, so handlers dedupe by message id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from prometheus_client import Counter

from shared.bus.amqp_topology import (
    Topology,
    declare_consumer_queue,
    declare_exchanges,
    declare_known_consumers,
    declare_process_queue,
)
from shared.bus.port import Handler, Message
from shared.logging import get_logger

log = get_logger("solewatch.bus.amqp")

handler_failures = Counter("amqp_handler_failures_total", "Handler calls that raised", ["consumer"])
deliveries = Counter("amqp_deliveries_total", "Messages delivered to handlers", ["consumer"])

CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0


class BusUnavailable(ConnectionError):
    """The broker did not take the message (down, unreachable, or refused it)."""


@dataclass(slots=True)
class _Subscription:
    consumer: str
    topics: list[str]
    handler: Handler
    broadcast: bool


class AmqpBus:
    name = "bus"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "solewatch",
        max_attempts: int = 5,
        first_backoff: float = 0.5,
        max_backoff: float = 30.0,
        prefetch: int = 32,
        reconnect_interval: float = 5.0,
    ):
        self._url = url
        self._reconnect_interval = reconnect_interval
        self.topology = Topology(prefix=prefix, max_attempts=max_attempts)
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._prefetch = prefetch
        self._subscriptions: list[_Subscription] = []
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    def subscribe(self, consumer: str, topics: list[str], handler: Handler, *, broadcast: bool = False) -> None:
        self._subscriptions.append(_Subscription(consumer, list(topics), handler, broadcast))

    async def start(self) -> None:
        self._connection = await asyncio.wait_for(
            aio_pika.connect_robust(self._url, reconnect_interval=self._reconnect_interval), CONNECT_TIMEOUT_S
        )
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        assert self._publish_channel is not None
        await declare_exchanges(self._publish_channel, self.topology)
        await declare_known_consumers(self._publish_channel, self.topology)
        for subscription in self._subscriptions:
            await self._consume(subscription)
        log.info("bus_connected", consumers=[s.consumer for s in self._subscriptions])

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def drain(self) -> None:
        pass  # consumers stop with close(); what they had not acked is redelivered

    async def reload(self, settings: Any) -> None:
        """A new SOLEWATCH_AMQP_URL (SIGHUP): reconnect there, with every subscription; unacked
        messages go back to their queues and are redelivered. The same URL changes nothing."""
        url = getattr(settings, "amqp_url", None)
        if not url or url == self._url:
            return
        await self.close()
        self._url, self._closing, self._tasks = url, False, set()
        await self.start()

    async def check_ready(self) -> str | None:
        if self._connection is None or self._connection.is_closed or not self._connection.connected.is_set():
            return "message broker unreachable"
        # The robust connection reopens its channels after the link: until the publishing one is back,
        # a publish would be refused, so the process is not ready yet.
        if self._publish_channel is not None and self._publish_channel.is_closed:
            return "message broker channel reopening"
        return None

    # -- publishing -------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, *, message_id: str) -> None:
        channel = self._publish_channel
        if channel is None or channel.is_closed:
            raise BusUnavailable("not connected to the message broker")
        message = aio_pika.Message(
            payload,
            message_id=message_id,
            type=topic,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            exchange = await channel.get_exchange(self.topology.exchange_for(topic), ensure=False)
            # mandatory=False: a topic nobody consumes is dropped, like the in-process bus does;
            # every consumer that must not miss a message has its queue declared in advance.
            await exchange.publish(message, routing_key=topic, mandatory=False, timeout=PUBLISH_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise BusUnavailable(f"publish to {topic!r} not confirmed: {exc!r}") from exc

    # -- consuming --------------------------------------------------------------------

    async def _consume(self, subscription: _Subscription) -> None:
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        if subscription.broadcast:
            queue = await declare_process_queue(channel, self.topology, subscription.topics)
        else:
            queue = await declare_consumer_queue(channel, self.topology, subscription.consumer, subscription.topics)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def enqueue(message: AbstractIncomingMessage) -> None:
            inbox.put_nowait(message)

        # aio-pika runs each delivery callback as its own task; a queue and one
        # worker keep the consumer's messages in delivery order.
        await queue.consume(enqueue)
        task = asyncio.create_task(self._work(subscription, inbox), name=f"amqp-{subscription.consumer}")
        self._tasks.add(task)

    async def _work(self, subscription: _Subscription, inbox: asyncio.Queue[AbstractIncomingMessage]) -> None:
        while True:
            incoming = await inbox.get()
            topic = incoming.routing_key or incoming.type or ""
            message = Message(topic, incoming.body, incoming.message_id or "")
            deliveries.labels(subscription.consumer).inc()
            try:
                await subscription.handler(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                handler_failures.labels(subscription.consumer).inc()
                if subscription.broadcast:  # best effort, and its queue has no delivery limit
                    log.exception("broadcast_handler_failed", consumer=subscription.consumer, topic=topic)
                    await self._settle(incoming.ack())
                    continue
                attempt = _delivery_count(incoming) + 1
                log.exception(
                    "handler_failed",
                    consumer=subscription.consumer,
                    topic=topic,
                    message_id=message.message_id,
                    attempt=attempt,
                    last_attempt=attempt >= self.topology.max_attempts,
                )
                self._later(self._return(incoming, self._backoff(attempt)))
                continue
            await self._settle(incoming.ack())

    def _backoff(self, attempt: int) -> float:
        return min(self._first_backoff * 2.0 ** (attempt - 1), self._max_backoff)

    async def _return(self, incoming: AbstractIncomingMessage, delay: float) -> None:
        # The message stays unacked meanwhile (it counts against the prefetch),
        # while the worker goes on with the next ones.
        await asyncio.sleep(delay)
        await self._settle(incoming.nack(requeue=True))

    async def _settle(self, settling: Awaitable[object]) -> None:
        try:
            await settling
        except Exception as exc:
            # The channel went away with the link: the broker redelivers the
            # message to whoever consumes next, which is at-least-once.
            if not self._closing:
                log.warning("settle_failed", error=repr(exc))

    def _later(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _delivery_count(incoming: AbstractIncomingMessage) -> int:
    """Deliveries before this one, as the quorum queue counts them."""
    value = (incoming.headers or {}).get("x-delivery-count", 0)
    return int(value) if isinstance(value, int) else 0

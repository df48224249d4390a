"""Every exchange, queue, binding and dead-letter route solewatch declares on RabbitMQ.

- Two durable topic exchanges: `<prefix>.alerts` carries what is about an
  alarm or an alert, `<prefix>.telemetry` everything else. The routing key is
  the bus topic.
- One durable quorum queue per consumer, `<prefix>.q.<consumer>`, bound to its
  topics. Quorum queues replicate across a cluster's nodes, which is how a
  deployment that outgrows one broker keeps its messages.
- Retries: a failed message is returned to its queue after a backoff; the
  queue's `x-delivery-limit` (a quorum queue feature) dead-letters it once it
  was delivered `max_attempts` times, so a poison message is never retried
  forever and never blocks the messages behind it.
- Broadcast subscriptions get a server-named exclusive queue per process,
  deleted with its connection: wake-up signals, not data.
- Dead letters: the direct exchange `<prefix>.dead` routes a consumer's dead
  messages to `<prefix>.dead.<consumer>`, a quorum queue where an operator can
  read them (and shovel them back with RabbitMQ's own tools).
  Dead-lettering is at-least-once (`x-dead-letter-strategy`), which needs
  `x-overflow: reject-publish` on the source queue.

The queues of the consumers known here are declared by every service at
start, whichever starts first: a message published before its consumer ever
ran still waits in that consumer's queue instead of being dropped unrouted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from shared.bus.topics import ALERT_TOPICS, KNOWN_CONSUMERS


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str = "solewatch"
    max_attempts: int = 5

    @property
    def telemetry_exchange(self) -> str:
        return f"{self.prefix}.telemetry"

    @property
    def alerts_exchange(self) -> str:
        return f"{self.prefix}.alerts"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    def exchange_for(self, topic: str) -> str:
        return self.alerts_exchange if topic in ALERT_TOPICS else self.telemetry_exchange

    def queue_name(self, consumer: str) -> str:
        return f"{self.prefix}.q.{consumer}"

    def dead_queue_name(self, consumer: str) -> str:
        return f"{self.prefix}.dead.{consumer}"

    def queue_arguments(self, consumer: str) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            # Deliveries after the first: `max_attempts` deliveries in all.
            "x-delivery-limit": self.max_attempts - 1,
            "x-dead-letter-exchange": self.dead_exchange,
            "x-dead-letter-routing-key": consumer,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }


async def declare_exchanges(channel: AbstractChannel, topology: Topology) -> dict[str, AbstractExchange]:
    exchanges = {}
    for name in (topology.telemetry_exchange, topology.alerts_exchange):
        exchanges[name] = await channel.declare_exchange(name, ExchangeType.TOPIC, durable=True)
    exchanges[topology.dead_exchange] = await channel.declare_exchange(
        topology.dead_exchange,
        ExchangeType.DIRECT,
        durable=True,
    )
    return exchanges


async def declare_consumer_queue(
    channel: AbstractChannel,
    topology: Topology,
    consumer: str,
    topics: Iterable[str],
) -> AbstractQueue:
    """The consumer's queue, bound to its topics, with its dead-letter queue behind it."""
    exchanges = await declare_exchanges(channel, topology)
    dead = await channel.declare_queue(
        topology.dead_queue_name(consumer),
        durable=True,
        arguments={"x-queue-type": "quorum"},
    )
    await dead.bind(exchanges[topology.dead_exchange], routing_key=consumer)
    queue = await channel.declare_queue(
        topology.queue_name(consumer),
        durable=True,
        arguments=topology.queue_arguments(consumer),
    )
    for topic in topics:
        await queue.bind(exchanges[topology.exchange_for(topic)], routing_key=topic)
    return queue


async def declare_known_consumers(channel: AbstractChannel, topology: Topology) -> None:
    for consumer, topics in KNOWN_CONSUMERS.items():
        await declare_consumer_queue(channel, topology, consumer, topics)


async def declare_process_queue(channel: AbstractChannel, topology: Topology, topics: Iterable[str]) -> AbstractQueue:
    """A queue of this process alone, gone with its connection, for broadcast subscriptions."""
    exchanges = await declare_exchanges(channel, topology)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for topic in topics:
        await queue.bind(exchanges[topology.exchange_for(topic)], routing_key=topic)
    return queue

"""The RabbitMQ bus under failure, against real brokers: a consumer killed
mid-message, a poison message, a broker restart and a link cut by a proxy.

The shared contract suite (tests/contract/test_bus_contract.py) covers the
normal behaviour; these tests cover what only a real broker and real
processes can show. Each test uses an exchange prefix of its own.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import pytest

from shared.bus import Message
from shared.bus.amqp import AmqpBus, BusUnavailable
from tests.contract.conftest import eventually
from tests.harness.servers import ServerProcess
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

# A consumer process that takes one message and hangs in its handler until killed.
HANGING_CONSUMER = """
import asyncio, sys
from shared.bus.amqp import AmqpBus

async def main(url, prefix):
    bus = AmqpBus(url, prefix=prefix, first_backoff=0.01)
    async def hang(message):
        print("@handling", message.message_id, flush=True)
        await asyncio.Event().wait()
    bus.subscribe("writer", ["frames"], hang)
    await bus.start()
    print("@ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _next_marked_line(process: subprocess.Popen[str]) -> str:
    """The process's next line starting with '@' (its logs share stdout)."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("@"):
            return line.strip()
    return "(exited)"


class Effects:
    """A handler that applies each message's effect once, however often it is delivered."""

    def __init__(self) -> None:
        self.deliveries: list[str] = []
        self.applied: dict[str, bytes] = {}

    async def __call__(self, message: Message) -> None:
        self.deliveries.append(message.message_id)
        self.applied.setdefault(message.message_id, message.payload)


@pytest.fixture
def prefix() -> str:
    return f"fail-{uuid.uuid4().hex[:8]}"


async def _bus(url: str, prefix: str, **kwargs: object) -> AmqpBus:
    # Reconnecting every 0.2 s, not 5: a test sees the link back as soon as the broker is.
    return AmqpBus(url, prefix=prefix, first_backoff=0.01, reconnect_interval=0.2, **kwargs)  # type: ignore[arg-type]


async def test_a_consumer_killed_mid_message_gets_it_redelivered_to_the_next_one(amqp_server: str, prefix: str) -> None:
    publisher = await _bus(amqp_server, prefix)
    await publisher.start()
    consumer = subprocess.Popen(
        [sys.executable, "-c", HANGING_CONSUMER, amqp_server, prefix],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    survivor: AmqpBus | None = None
    try:
        assert consumer.stdout is not None
        assert await asyncio.to_thread(_next_marked_line, consumer) == "@ready"
        await publisher.publish("frames", b"batch-1", message_id="m-1")
        assert await asyncio.to_thread(_next_marked_line, consumer) == "@handling m-1"
        consumer.send_signal(signal.SIGKILL)
        consumer.wait()

        survivor = await _bus(amqp_server, prefix)
        effects = Effects()
        survivor.subscribe("writer", ["frames"], effects)
        await survivor.start()
        await eventually(lambda: bool(effects.deliveries), timeout=10)
        await asyncio.sleep(0.2)
        assert effects.deliveries == ["m-1"]
        assert effects.applied == {"m-1": b"batch-1"}
    finally:
        if consumer.poll() is None:
            consumer.kill()
        await publisher.close()
        if survivor is not None:
            await survivor.close()


async def test_a_poison_message_is_dead_lettered_and_kept(amqp_server: str, prefix: str) -> None:
    bus = await _bus(amqp_server, prefix, max_attempts=3)
    handled: list[bytes] = []
    attempts: list[str] = []

    async def handler(message: Message) -> None:
        attempts.append(message.message_id)
        if message.payload == b"poison":
            raise ValueError("cannot parse")
        handled.append(message.payload)

    bus.subscribe("engine", ["alarm"], handler)
    await bus.start()
    try:
        await bus.publish("alarm", b"poison", message_id="m-poison")
        await bus.publish("alarm", b"sos", message_id="m-sos")
        await eventually(lambda: handled == [b"sos"] and attempts.count("m-poison") == 3, timeout=10)

        # The poison message waits in the consumer's dead-letter queue, intact.
        connection = await aio_pika.connect(amqp_server)
        try:
            channel = await connection.channel()
            dead_queue = await channel.declare_queue(bus.topology.dead_queue_name("engine"), passive=True)
            dead: list[aio_pika.abc.AbstractIncomingMessage] = []

            async def one_dead_letter() -> bool:
                got = await dead_queue.get(fail=False)
                if got is not None:
                    dead.append(got)
                return bool(dead)

            await eventually(one_dead_letter, timeout=5, interval=0.05)
            assert (dead[0].body, dead[0].message_id) == (b"poison", "m-poison")
        finally:
            await connection.close()
        await asyncio.sleep(0.2)
        assert attempts.count("m-poison") == 3
    finally:
        await bus.close()


async def test_after_a_broker_restart_everything_confirmed_is_delivered(
    restartable_broker: ServerProcess,
    prefix: str,
) -> None:
    publisher = await _bus(restartable_broker.url, prefix)
    effects = Effects()
    # The consumer ran once (its durable queue exists), then stopped.
    first_run = await _bus(restartable_broker.url, prefix)
    first_run.subscribe("writer", ["frames"], effects)
    await first_run.start()
    await first_run.close()
    consumer = await _bus(restartable_broker.url, prefix)
    consumer.subscribe("writer", ["frames"], effects)
    await publisher.start()
    try:
        # Confirmed while no consumer runs: they wait in its durable queue.
        for n in range(50):
            await publisher.publish("frames", f"before-{n}".encode(), message_id=f"before-{n}")

        await asyncio.to_thread(restartable_broker.stop)
        with pytest.raises(BusUnavailable):
            await publisher.publish("frames", b"lost?", message_id="during")
        assert await publisher.check_ready() is not None
        await asyncio.to_thread(restartable_broker.start, 40.0)

        await eventually(lambda: _ready(publisher), timeout=30, interval=0.2)
        await consumer.start()
        await publisher.publish("frames", b"after", message_id="after")
        await eventually(lambda: len(effects.applied) == 51, timeout=15)
        assert set(effects.applied) == {f"before-{n}" for n in range(50)} | {"after"}
    finally:
        await publisher.close()
        await consumer.close()


async def _ready(bus: AmqpBus) -> bool:
    return await bus.check_ready() is None


@pytest.fixture
async def proxy(amqp_server: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(amqp_server)
    proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 5672))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def test_a_cut_link_reconnects_and_loses_nothing_acknowledged(
    amqp_server: str,
    proxy: TcpProxy,
    prefix: str,
) -> None:
    through_proxy = amqp_server.replace(f":{urlsplit(amqp_server).port}/", f":{proxy.port}/")
    publisher = await _bus(through_proxy, prefix)
    consumer = await _bus(through_proxy, prefix)
    effects = Effects()
    release = asyncio.Event()

    async def slow(message: Message) -> None:
        await release.wait()  # holds the first messages unacked across the cut
        await effects(message)

    consumer.subscribe("writer", ["frames"], slow)
    await publisher.start()
    await consumer.start()
    try:
        confirmed = []
        for n in range(20):
            await publisher.publish("frames", f"m-{n}".encode(), message_id=f"m-{n}")
            confirmed.append(f"m-{n}")

        proxy.refuse = True
        proxy.cut()
        release.set()
        await eventually(lambda: _not_ready(publisher), timeout=5)
        with pytest.raises(BusUnavailable):
            await publisher.publish("frames", b"x", message_id="during-cut")
        proxy.refuse = False

        await eventually(lambda: _ready(publisher), timeout=30, interval=0.2)
        await eventually(lambda: _ready(consumer), timeout=30, interval=0.2)
        await publisher.publish("frames", b"m-after", message_id="m-after")
        confirmed.append("m-after")
        await eventually(lambda: set(confirmed) <= set(effects.applied), timeout=20)
        assert "during-cut" not in effects.applied  # refused to its caller, never half-sent
    finally:
        await publisher.close()
        await consumer.close()


async def _not_ready(bus: AmqpBus) -> bool:
    return await bus.check_ready() is not None

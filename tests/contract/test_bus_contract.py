"""The bus port's contract (shared/bus/port.py), for every adapter in BUS_FACTORIES,
and the outbox relay over every store and bus adapter.

Tests subscribe before `start()`, as services do. `publish` may return before
or after the handlers ran (the in-process bus runs them first, a broker only
confirms it holds the message), so tests wait for deliveries with bounded
waits, then leave a short moment for a duplicate to show.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from shared.bus import Bus, Message
from shared.bus.outbox import OutboxRelay
from shared.bus.topics import TOPIC_ALARM, TOPIC_TELEMETRY
from shared.protocols.xsole import Alarm, AlarmKind, Heartbeat, Position
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.store import FrameRecord, Store, hash_device_token
from shared.store.messages import telemetry_items
from tests.contract.conftest import BUS_MAX_ATTEMPTS, eventually
from tests.helpers.stored import commit_frames

Unique = Callable[[str], str]
SETTLE = 0.1  # how long to watch for a duplicate or a stray delivery
TS = 1767225600  # 2026-01-01T00:00:00Z


class Recorder:
    """A handler that keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def ids(self) -> list[str]:
        return [m.message_id for m in self.messages]


async def test_every_subscriber_of_the_topic_gets_the_message_once(bus: Bus, unique: Unique) -> None:
    topic, other_topic = unique("alarm"), unique("telemetry")
    first, second, elsewhere = Recorder(), Recorder(), Recorder()
    bus.subscribe(unique("first"), [topic], first)
    bus.subscribe(unique("second"), [topic], second)
    bus.subscribe(unique("elsewhere"), [other_topic], elsewhere)
    await bus.start()

    payload = b'{"kind":"sos"}\xff\x00'  # payloads are bytes, not necessarily UTF-8
    await bus.publish(topic, payload, message_id="m-1")

    await eventually(lambda: bool(first.messages and second.messages))
    await asyncio.sleep(SETTLE)
    expected = [Message(topic, payload, "m-1")]
    assert first.messages == expected
    assert second.messages == expected
    assert elsewhere.messages == []


async def test_a_consumer_of_several_topics_gets_each_topics_messages(bus: Bus, unique: Unique) -> None:
    alarms, alerts, unrelated = unique("alarm"), unique("alert"), unique("unrelated")
    both = Recorder()
    bus.subscribe(unique("both"), [alarms, alerts], both)
    await bus.start()

    await bus.publish(alarms, b"1", message_id="a-1")
    await bus.publish(unrelated, b"2", message_id="u-1")  # nobody listens: dropped without error
    await bus.publish(alerts, b"3", message_id="b-1")

    await eventually(lambda: len(both.messages) >= 2)
    await asyncio.sleep(SETTLE)
    assert sorted((m.topic, m.payload, m.message_id) for m in both.messages) == [
        (alarms, b"1", "a-1"),
        (alerts, b"3", "b-1"),
    ]


async def test_publish_order_is_kept_per_topic_for_one_consumer(bus: Bus, unique: Unique) -> None:
    topic = unique("telemetry")
    consumer = Recorder()
    bus.subscribe(unique("consumer"), [topic], consumer)
    await bus.start()

    ids = [f"m-{n}" for n in range(30)]
    for n, message_id in enumerate(ids):
        await bus.publish(topic, str(n).encode(), message_id=message_id)

    await eventually(lambda: len(consumer.messages) >= len(ids))
    assert consumer.ids() == ids
    assert [m.payload for m in consumer.messages] == [str(n).encode() for n in range(30)]


async def test_a_handler_that_raises_gets_the_message_again(bus: Bus, unique: Unique) -> None:
    topic = unique("alarm")
    attempts: list[Message] = []

    async def fails_once(message: Message) -> None:
        attempts.append(message)
        if len(attempts) == 1:
            raise RuntimeError("consumer hiccup")

    bus.subscribe(unique("flaky"), [topic], fails_once)
    await bus.start()
    await bus.publish(topic, b"sos", message_id="m-1")

    await eventually(lambda: len(attempts) >= 2)
    await asyncio.sleep(SETTLE)
    # The same message each time: consumers dedupe by message id.
    assert attempts == [Message(topic, b"sos", "m-1")] * 2


async def test_after_the_attempt_limit_the_bus_moves_on(bus: Bus, unique: Unique) -> None:
    topic = unique("alarm")
    attempts: dict[str, int] = {}
    handled: list[str] = []

    async def poisoned(message: Message) -> None:
        attempts[message.message_id] = attempts.get(message.message_id, 0) + 1
        if message.payload == b"poison":
            raise ValueError("cannot handle this one")
        handled.append(message.message_id)

    bus.subscribe(unique("consumer"), [topic], poisoned)
    await bus.start()
    await bus.publish(topic, b"poison", message_id="m-poison")
    await bus.publish(topic, b"fine", message_id="m-fine")
    await bus.publish(topic, b"fine too", message_id="m-fine-too")

    await eventually(lambda: handled == ["m-fine", "m-fine-too"] and attempts.get("m-poison") == BUS_MAX_ATTEMPTS)
    await asyncio.sleep(SETTLE)
    assert attempts == {"m-poison": BUS_MAX_ATTEMPTS, "m-fine": 1, "m-fine-too": 1}


async def test_a_failing_consumer_does_not_cost_another_consumer_its_message(bus: Bus, unique: Unique) -> None:
    topic = unique("alarm")
    healthy = Recorder()

    async def broken(message: Message) -> None:
        raise RuntimeError("always fails")

    bus.subscribe(unique("broken"), [topic], broken)
    bus.subscribe(unique("healthy"), [topic], healthy)
    await bus.start()
    await bus.publish(topic, b"sos", message_id="m-1")

    await eventually(lambda: bool(healthy.messages))
    await asyncio.sleep(SETTLE)
    assert healthy.ids() == ["m-1"]


async def test_a_slow_consumer_does_not_hold_back_another(bus: Bus, unique: Unique) -> None:
    topic = unique("alarm")
    release = asyncio.Event()
    slow_done: list[str] = []
    fast_done: list[str] = []

    async def slow(message: Message) -> None:
        await asyncio.wait_for(release.wait(), 5)
        slow_done.append(message.message_id)

    async def fast(message: Message) -> None:
        fast_done.append(message.message_id)

    bus.subscribe(unique("slow"), [topic], slow)
    bus.subscribe(unique("fast"), [topic], fast)
    await bus.start()
    # Not awaited: the in-process bus's publish returns only once every handler is done.
    publishing = asyncio.create_task(bus.publish(topic, b"sos", message_id="m-1"))
    try:
        await eventually(lambda: bool(fast_done))
        assert slow_done == []
    finally:
        release.set()
        await publishing
    await eventually(lambda: slow_done == ["m-1"])
    assert fast_done == ["m-1"]


# -- outbox relay over a store and a bus ---------------------------------------------


async def _device_records(store: Store) -> tuple[list[FrameRecord], list[FrameRecord], list[FrameRecord]]:
    tenant_id = await store.ensure_tenant("acme")
    device = await store.add_device(
        tenant_id=tenant_id, imei="356307042441013", name="Alice", token_hash=hash_device_token(b"t" * 16)
    )
    now = time.time()

    def record(event: Any) -> FrameRecord:
        return FrameRecord(device.id, tenant_id, device.imei, event, now)

    positions = [
        record(Position(n, TS + n, 436163000 + n, 70553000, 12, 140, 900, 9, 11, 80, FLAG_FIX_VALID))
        for n in range(1, 4)
    ]
    alarm = [record(Alarm(4, TS + 4, AlarmKind.SOS, 436163004, 70553000, 79, FLAG_FIX_VALID))]
    heartbeat = [record(Heartbeat(5, TS + 5, 78, -70))]
    return positions, alarm, heartbeat


class _RemovalLostInCrash:
    """The store as a relay that crashes before its removals land sees it."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def outbox_remove(self, ids: Any) -> None:
        pass


async def test_outbox_entries_reach_the_bus_and_survive_a_relay_crash(store: Store, bus: Bus, unique: Unique) -> None:
    # The relay publishes on the real topic names: against a shared broker, run this
    # test alone on them (no parallel test run publishing telemetry meanwhile).
    received = Recorder()
    bus.subscribe(unique("consumer"), [TOPIC_TELEMETRY, TOPIC_ALARM], received)
    await bus.start()
    for records in await _device_records(store):
        await commit_frames(store, records)
    entries = await store.outbox_pending(100)
    assert [e.topic for e in entries] == [TOPIC_TELEMETRY, TOPIC_ALARM, TOPIC_TELEMETRY]

    # The first relay hands one entry over, then crashes before removing it.
    crashed = OutboxRelay(_RemovalLostInCrash(store), bus, batch=1)  # type: ignore[arg-type]
    assert await crashed.relay_once() == 1
    await eventually(lambda: len(received.messages) >= 1)
    first_delivery = received.messages[0]
    assert (first_delivery.topic, first_delivery.payload) == (entries[0].topic, entries[0].payload)
    assert await store.outbox_pending(100) == entries  # nothing was removed

    # The relay of the next start delivers everything still in the outbox, the
    # entry already delivered included, under the same message id.
    restarted = OutboxRelay(store, bus, poll_interval=0.05)
    await restarted.start()
    try:
        await eventually(lambda: len(received.messages) >= 1 + len(entries))
    finally:
        await restarted.drain()
        await restarted.close()
    await asyncio.sleep(SETTLE)
    assert len(received.messages) == 1 + len(entries)
    redelivered = received.messages[1:]
    assert first_delivery in redelivered
    for topic in (TOPIC_TELEMETRY, TOPIC_ALARM):  # order is kept per topic
        assert [m.payload for m in redelivered if m.topic == topic] == [e.payload for e in entries if e.topic == topic]
    assert len({m.message_id for m in redelivered}) == len(entries)  # one id per entry: consumers can dedupe

    assert await store.outbox_pending(100) == []  # delivered entries are removed
    again = OutboxRelay(store, bus)
    assert await again.relay_once() == 0
    await asyncio.sleep(SETTLE)
    assert len(received.messages) == 1 + len(entries)

    _assert_payloads(redelivered)


def _assert_payloads(messages: list[Message]) -> None:
    telemetry = [m for m in messages if m.topic == TOPIC_TELEMETRY]
    positions = [p for m in telemetry for p in telemetry_items(m.payload, "positions")]
    # The first commit's three positions of one device: its newest is published.
    assert [(p["seq"], p["ts"], p["imei"]) for p in positions] == [(3, TS + 3, "356307042441013")]
    heartbeats = [h for m in telemetry for h in telemetry_items(m.payload, "heartbeats")]
    assert [(h["seq"], h["battery"]) for h in heartbeats] == [(5, 78)]
    [alarm] = [orjson.loads(m.payload) for m in messages if m.topic == TOPIC_ALARM]
    assert (alarm["kind"], alarm["imei"], alarm["device_ts"], alarm["seq"]) == ("sos", "356307042441013", TS + 4, 4)
    assert (alarm["lat"], alarm["lon"], alarm["battery"]) == (43.6163004, 7.0553, 79)


class _CommitDuringRead:
    """The store as a relay sees it when a commit lands (and notifies) while the relay reads."""

    def __init__(self, store: Store, commit: Callable[[], Any]) -> None:
        self._store = store
        self._commit = commit
        self.relay: OutboxRelay | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def outbox_pending(self, limit: int, *, after_id: int = 0) -> Any:
        entries = await self._store.outbox_pending(limit, after_id=after_id)
        commit, self._commit = self._commit, None
        if commit is not None:
            await commit()
            assert self.relay is not None
            self.relay.notify()  # what the store's on_write hook does after a commit
        return entries


async def test_a_commit_notified_during_a_relay_pass_is_relayed_without_waiting_for_the_poll(
    store: Store, bus: Bus, unique: Unique
) -> None:
    received = Recorder()
    bus.subscribe(unique("consumer"), [TOPIC_TELEMETRY, TOPIC_ALARM], received)
    await bus.start()
    positions, alarm, _ = await _device_records(store)
    await commit_frames(store, positions)
    racing = _CommitDuringRead(store, lambda: commit_frames(store, alarm))
    relay = racing.relay = OutboxRelay(racing, bus, poll_interval=30.0)  # type: ignore[arg-type]
    await relay.start()
    try:
        # Both the first entry and the one committed during the first pass arrive, long before the poll.
        await eventually(lambda: {m.topic for m in received.messages} == {TOPIC_TELEMETRY, TOPIC_ALARM}, timeout=5)
    finally:
        await relay.close()

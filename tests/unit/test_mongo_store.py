"""What only the MongoDB store has to show: its migration, its indexes, and that a
stop between two of its writes loses nothing (docs/storage.md).

Each test runs on mongomock-motor's emulator and, when SOLEWATCH_TEST_MONGODB_URL
is set, on that server. A stop is simulated by making one internal write fail
the way a lost connection does, then doing what the caller does: try again.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from mongomock_motor import AsyncMongoMockClient
from pymongo.errors import AutoReconnect

from shared.protocols.xsole import AlarmKind
from shared.store import Device, StoreUnavailable
from shared.store.alerts import TOPIC_ALERT
from shared.store.messages import TOPIC_ALARM, TOPIC_TELEMETRY
from shared.store.mongo import INDEXES, MongoStore
from shared.store.mongo_accounts import MongoAccounts
from shared.store.mongo_alerts import MongoAlerts
from tests.contract.mongo_shim import SkipUnsupported, mongodb_store, mongomock_store
from tests.contract.store_data import IMEI, TS, add_device, frame, position, sos
from tests.helpers.stored import commit_frames, count_stored

ALL_INDEXES = INDEXES | MongoAccounts.INDEXES | MongoAlerts.INDEXES


@pytest.fixture(params=["mongomock", "mongodb"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MongoStore]:
    opened = mongomock_store(wrap=lambda store: store) if request.param == "mongomock" else mongodb_store()
    async with opened as store:
        yield store


def lose_connection_once(store: MongoStore, method: str) -> None:
    """The store's next call of `method` fails as if the connection dropped before it."""
    original = getattr(store, method)

    async def fail(*args: Any, **kwargs: Any) -> Any:
        setattr(store, method, original)
        raise AutoReconnect("connection lost (simulated)")

    setattr(store, method, fail)


async def outbox(store: MongoStore, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(e.payload) for e in await store.outbox_pending(1000) if e.topic == topic]


async def index_specs(store: MongoStore, collection: str) -> dict[str, tuple[Any, ...]]:
    information = await store._db[collection].index_information()
    return {
        name: (list(spec["key"]), spec.get("unique", False), spec.get("partialFilterExpression"))
        for name, spec in information.items()
        if name != "_id_"
    }


# -- migration ----------------------------------------------------------------------------


async def test_every_index_the_queries_need_exists(store: MongoStore) -> None:
    for collection, indexes in ALL_INDEXES.items():
        specs = await index_specs(store, collection)
        for index in indexes:
            document = index.document
            assert specs[document["name"]] == (
                list(document["key"].items()),
                document.get("unique", False),
                document.get("partialFilterExpression"),
            ), (collection, document["name"])


async def test_migrating_again_changes_nothing(store: MongoStore) -> None:
    device = await add_device(store)
    await commit_frames(store, [frame(device, position(1, TS + 1))])
    before = {collection: await index_specs(store, collection) for collection in ALL_INDEXES}

    await store.migrate()
    await store.migrate()

    assert {collection: await index_specs(store, collection) for collection in ALL_INDEXES} == before
    assert await count_stored(store, device.id) == {"positions": 1, "heartbeats": 0, "activities": 0, "alarms": 0}


async def test_positions_are_a_time_series(store: MongoStore) -> None:
    if not store._timeseries:
        pytest.skip("mongomock has no time-series collections: positions are a plain collection on it")
    [info] = await (await store._db.list_collections(filter={"name": "positions"})).to_list(None)
    options = info["options"]["timeseries"]  # servers add their bucketing options
    assert {name: options[name] for name in ("timeField", "metaField", "granularity")} == {
        "timeField": "time",
        "metaField": "device_id",
        "granularity": "seconds",
    }


async def test_a_feature_the_emulator_lacks_skips_instead_of_failing() -> None:
    # What the contract suite's mongomock entry does when the adapter reaches past the emulator.
    store = SkipUnsupported(MongoStore(AsyncMongoMockClient(tz_aware=True), "solewatch", timeseries=True))
    with pytest.raises(pytest.skip.Exception, match="mongomock does not implement what open"):
        await store.open()


# -- a stop between two writes, then the caller's retry ------------------------------------


async def test_a_position_stored_without_its_key_is_read_and_counted_once(store: MongoStore) -> None:
    device = await add_device(store)
    fixes = [frame(device, position(n, TS + n // 2)) for n in range(4)]
    await commit_frames(store, fixes)
    # The stop: positions stored, their keys not.
    await store._db.position_keys.delete_many({"device_id": device.id})
    await commit_frames(store, fixes)

    assert await store._db.positions.count_documents({"device_id": device.id}) == 8  # each stored twice
    assert [(p.ts, p.seq) for p in await store.positions(device.id)] == [(TS + n // 2, n) for n in range(4)]
    # Pages of 1 and 3 fetch past the copies to fill themselves.
    assert [p.seq for p in await store.positions(device.id, limit=1)] == [0]
    assert [p.seq for p in await store.positions(device.id, after=(TS, 0), limit=3)] == [1, 2, 3]
    assert (await count_stored(store, device.id))["positions"] == 4
    await commit_frames(store, fixes)
    assert await store._db.positions.count_documents({"device_id": device.id}) == 8  # keys stored now


async def test_an_alarm_stored_before_its_message_gets_it_on_the_retry(store: MongoStore) -> None:
    device = await add_device(store)
    alarm = frame(device, sos(1, TS + 1))
    lose_connection_once(store, "_append_outbox")
    with pytest.raises(StoreUnavailable):
        await commit_frames(store, [alarm, frame(device, position(2, TS + 2))])
    assert (await count_stored(store, device.id))["alarms"] == 1
    assert await store.outbox_pending(10) == []

    # The device was not acknowledged: it sends the alarm again, received later.
    await commit_frames(store, [alarm._replace(received_at=alarm.received_at + 5)])
    [message] = await outbox(store, TOPIC_ALARM)
    [stored] = await store._db.alarms.find().to_list(None)
    assert message["alarm_id"] == stored["_id"]
    assert message["received_at"] == alarm.received_at  # the message as first built
    await commit_frames(store, [alarm])
    assert len(await outbox(store, TOPIC_ALARM)) == 1


async def test_an_alarm_message_queued_but_not_cleared_is_not_queued_twice(store: MongoStore) -> None:
    device = await add_device(store)
    alarm = frame(device, sos(1, TS + 1))
    await commit_frames(store, [alarm])
    [message] = await outbox(store, TOPIC_ALARM)
    # The stop: the message queued, the alarm's copy of it not yet cleared.
    await store._db.alarms.update_one(
        {"_id": message["alarm_id"]}, {"$set": {"pending_message": orjson.dumps(message)}}
    )
    await commit_frames(store, [alarm])
    assert await outbox(store, TOPIC_ALARM) == [message]
    assert await store._db.alarms.count_documents({"pending_message": {"$exists": True}}) == 0


async def test_a_commit_refused_before_any_write_stores_nothing(store: MongoStore) -> None:
    device = await add_device(store)
    lose_connection_once(store, "_prepare_alarms")
    with pytest.raises(StoreUnavailable):
        await commit_frames(store, [frame(device, position(1, TS + 1)), frame(device, sos(2, TS + 2))])
    assert await count_stored(store, device.id) == {"positions": 0, "heartbeats": 0, "activities": 0, "alarms": 0}
    assert await store.outbox_pending(10) == []


async def test_telemetry_stored_before_its_message_gets_it_on_the_retry(store: MongoStore) -> None:
    device = await add_device(store)
    fix = frame(device, position(1, TS + 1))
    lose_connection_once(store, "_append_outbox")
    with pytest.raises(StoreUnavailable):
        await commit_frames(store, [fix])
    assert await store.outbox_pending(10) == []
    await commit_frames(store, [fix])
    [message] = await outbox(store, TOPIC_TELEMETRY)
    assert [row[1] for row in message["positions"]["rows"]] == [1]


async def raised(store: MongoStore, device: Device) -> dict[str, Any]:
    await commit_frames(store, [frame(device, sos(1, TS + 1, kind=AlarmKind.FALL))])
    [alarm] = await outbox(store, TOPIC_ALARM)
    return alarm


async def test_an_alert_stored_before_its_announcement_is_announced_on_redelivery(store: MongoStore) -> None:
    alarm = await raised(store, await add_device(store))
    lose_connection_once(store, "_append_outbox")
    with pytest.raises(StoreUnavailable):
        await store.raise_alert_from_alarm(alarm)
    assert await outbox(store, TOPIC_ALERT) == []

    # The bus delivers the alarm again: this call is the one that makes the alert known.
    alert, created = await store.raise_alert_from_alarm(alarm)
    assert created
    assert (await store.raise_alert_from_alarm(alarm)) == (alert, False)
    assert [(m["event"], m["alert"]["id"]) for m in await outbox(store, TOPIC_ALERT)] == [("created", alert.id)]
    assert [e.action for e in await store.alert_timeline(alert.tenant_id, alert.id)] == ["raised"]


async def test_an_acknowledgement_retried_after_a_stop_is_announced_once(store: MongoStore) -> None:
    alarm = await raised(store, await add_device(store))
    alert, _ = await store.raise_alert_from_alarm(alarm)
    lose_connection_once(store, "_append_outbox")
    with pytest.raises(StoreUnavailable):
        await store.acknowledge_alert(alert.tenant_id, alert.id, by="ana")

    acked = await store.acknowledge_alert(alert.tenant_id, alert.id, by="ana")
    assert acked is not None and acked.status == "acknowledged"
    assert await store.acknowledge_alert(alert.tenant_id, alert.id, by="bob") == acked
    assert [m["event"] for m in await outbox(store, TOPIC_ALERT)] == ["created", "acknowledged"]
    timeline = await store.alert_timeline(alert.tenant_id, alert.id)
    assert [(e.action, e.actor) for e in timeline] == [("raised", None), ("acknowledged", "ana")]


async def test_a_stopped_change_is_announced_at_the_next_open(store: MongoStore) -> None:
    alarm = await raised(store, await add_device(store))
    alert, _ = await store.raise_alert_from_alarm(alarm)
    lose_connection_once(store, "_append_outbox")
    with pytest.raises(StoreUnavailable):
        await store.resolve_alert(alert.tenant_id, alert.id, by="ana", note="fine")

    # Nobody retries; the next process to open the store finishes it.
    restarted = MongoStore(store._client, store._db.name, timeseries=store._timeseries)
    await restarted.open()
    assert [m["event"] for m in await outbox(restarted, TOPIC_ALERT)] == ["created", "resolved"]
    [_, resolved] = await restarted.alert_timeline(alert.tenant_id, alert.id)
    assert (resolved.action, resolved.detail) == ("resolved", {"note": "fine"})


async def test_on_write_follows_completed_writes_only(store: MongoStore) -> None:
    calls: list[float] = []
    store.on_write = lambda: calls.append(time.monotonic())
    device = await add_device(store)
    after_setup = len(calls)
    assert after_setup >= 1
    lose_connection_once(store, "_append_outbox")
    with pytest.raises(StoreUnavailable):
        await commit_frames(store, [frame(device, position(1, TS + 1))])
    assert len(calls) == after_setup
    await commit_frames(store, [frame(device, position(1, TS + 1))])
    assert len(calls) == after_setup + 1


# -- an unreachable server ---------------------------------------------------------------


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "call",
    [
        lambda store: store.ping(),
        lambda store: store.open(),
        lambda store: store.device_by_imei(IMEI),
    ],
    ids=["ping", "open", "read"],
)
async def test_an_unreachable_server_is_store_unavailable(call: Callable[[MongoStore], Awaitable[Any]]) -> None:
    store = MongoStore(f"mongodb://127.0.0.1:{unused_port()}", "solewatch", call_timeout=0.2)
    try:
        with pytest.raises(StoreUnavailable):
            await call(store)
    finally:
        await store.close()

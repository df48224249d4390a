"""The `positions` webhook port (shared/store/webhook_positions.py) for every store adapter: who
subscribes, pending positions added once per (endpoint, bus message), batched into ordinary
deliveries at most one outstanding per endpoint, capped in size, dropped by an erasure; and, for
MongoDB, a batch stopped half way redone with the same rows and event id."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.store import Store
from shared.store.mongo import MongoStore
from shared.store.webhook_positions import MAX_BATCH_ITEMS
from shared.store.webhooks import AttemptOutcome
from tests.contract.store_data import IMEI, OTHER_IMEI, add_device

NOW = 1_767_225_600.0


async def endpoint(store: Store, tenant_id: int, events: tuple[str, ...] = ("positions",)) -> int:
    made = await store.add_webhook_endpoint(
        tenant_id=tenant_id, url="https://hooks.example/p", events=events, description=None, secret="whsec_p"
    )
    return made.id


def item(device_id: int, n: int, imei: str = IMEI) -> tuple[int, dict[str, Any]]:
    return device_id, {"imei": imei, "ts": f"2026-01-01T00:00:{n:02d}Z", "lat": 43.6 + n / 1000, "lon": 7.05}


async def positions_deliveries(store: Store, tenant_id: int, endpoint_id: int) -> list[Any]:
    deliveries = await store.webhook_deliveries(tenant_id, endpoint_id)
    return [delivery for delivery in reversed(deliveries) if delivery.type == "positions"]


async def deliver(store: Store, delivery: Any, at: float) -> None:
    [claimed] = await store.claim_webhook_deliveries(owner="t", now=at, lease_s=60, limit=1)
    assert claimed.event_id == delivery.event_id
    await store.finish_webhook_attempt(claimed.id, owner="t", outcome=AttemptOutcome("delivered", 204, None, None, at))


async def test_subscribers_are_the_enabled_endpoints_asking_for_positions(store: Store) -> None:
    acme, other = await store.ensure_tenant("acme"), await store.ensure_tenant("other")
    wanted = await endpoint(store, acme, ("alert.raised", "positions"))
    await endpoint(store, acme, ("alert.raised",))
    disabled = await endpoint(store, acme)
    await store.update_webhook_endpoint(acme, disabled, enabled=False)
    elsewhere = await endpoint(store, other)
    assert await store.positions_subscribers() == {acme: [wanted], other: [elsewhere]}


async def test_a_message_is_added_once_per_endpoint(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    first, second = await endpoint(store, acme), await endpoint(store, acme)
    items = [item(1, 1), item(2, 2)]
    added = await store.add_pending_positions(
        tenant_id=acme, endpoint_ids=[first, second], message_id="outbox-1", items=items, at=NOW
    )
    again = await store.add_pending_positions(
        tenant_id=acme, endpoint_ids=[first, second], message_id="outbox-1", items=items, at=NOW
    )
    assert (added, again) == (2, 0)
    await store.add_pending_positions(
        tenant_id=acme, endpoint_ids=[first], message_id="outbox-2", items=[item(1, 3)], at=NOW
    )
    assert await store.pending_positions(first) == [items[0][1], items[1][1], item(1, 3)[1]]
    assert await store.pending_positions(second) == [items[0][1], items[1][1]]


async def test_an_endpoint_of_another_tenant_or_deleted_gets_nothing(store: Store) -> None:
    acme, other = await store.ensure_tenant("acme"), await store.ensure_tenant("other")
    theirs, gone = await endpoint(store, other), await endpoint(store, acme)
    await store.delete_webhook_endpoint(acme, gone)
    added = await store.add_pending_positions(
        tenant_id=acme, endpoint_ids=[theirs, gone], message_id="outbox-1", items=[item(1, 1)], at=NOW
    )
    assert added == 0
    assert await store.pending_positions(theirs) == []
    assert await store.batch_pending_positions(now=NOW) == 0


async def test_a_batch_is_one_positions_delivery_and_a_redelivered_message_adds_nothing(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    hook = await endpoint(store, acme)
    items = [item(1, 1), item(2, 2)]
    await store.add_pending_positions(tenant_id=acme, endpoint_ids=[hook], message_id="outbox-7", items=items, at=NOW)
    assert await store.batch_pending_positions(now=NOW + 0.5) == 1
    [delivery] = await positions_deliveries(store, acme, hook)
    body = orjson.loads(delivery.payload)
    assert body == {
        "id": delivery.event_id,
        "type": "positions",
        "created_at": "2026-01-01T00:00:00.500Z",
        "data": {"items": [items[0][1], items[1][1]]},
    }
    assert delivery.event_id.startswith("evt_") and delivery.status == "pending"
    assert await store.pending_positions(hook) == []
    # The same bus message heard again after its batch went: nothing new is owed.
    again = await store.add_pending_positions(
        tenant_id=acme, endpoint_ids=[hook], message_id="outbox-7", items=items, at=NOW + 1
    )
    assert again == 0 and await store.pending_positions(hook) == []
    assert await store.batch_pending_positions(now=NOW + 5) == 0


async def test_the_next_batch_waits_until_the_previous_is_delivered_and_a_gap_has_passed(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    hook = await endpoint(store, acme)
    await store.add_pending_positions(tenant_id=acme, endpoint_ids=[hook], message_id="m1", items=[item(1, 1)], at=NOW)
    assert await store.batch_pending_positions(now=NOW) == 1
    await store.add_pending_positions(tenant_id=acme, endpoint_ids=[hook], message_id="m2", items=[item(1, 2)], at=NOW)
    await store.add_pending_positions(tenant_id=acme, endpoint_ids=[hook], message_id="m3", items=[item(1, 3)], at=NOW)
    assert await store.batch_pending_positions(now=NOW + 30) == 0  # the first is still owed
    [first] = await positions_deliveries(store, acme, hook)
    await deliver(store, first, NOW + 40)
    assert await store.batch_pending_positions(now=NOW + 40.5, min_gap_s=1.0) == 0  # delivered under a second ago
    assert await store.batch_pending_positions(now=NOW + 41, min_gap_s=1.0) == 1
    first, second = await positions_deliveries(store, acme, hook)
    assert orjson.loads(second.payload)["data"]["items"] == [item(1, 2)[1], item(1, 3)[1]]
    assert second.event_id != first.event_id


async def test_a_batch_holds_at_most_max_items_and_the_rest_follows(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    hook = await endpoint(store, acme)
    for n in range(5):
        await store.add_pending_positions(
            tenant_id=acme, endpoint_ids=[hook], message_id=f"m{n}", items=[item(1, 2 * n), item(2, 2 * n + 1)], at=NOW
        )
    sent: list[dict[str, Any]] = []
    at = NOW
    while await store.batch_pending_positions(now=at, max_items=4):
        delivery = (await positions_deliveries(store, acme, hook))[-1]
        batch = orjson.loads(delivery.payload)["data"]["items"]
        assert len(batch) <= 4
        sent += batch
        await deliver(store, delivery, at)
        at += 2
    assert sent == [item(d, n)[1] for n, d in zip(range(10), [1, 2] * 5, strict=True)]


async def test_a_message_larger_than_a_batch_is_split_across_batches(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    hook = await endpoint(store, acme)
    items = [item(n, n % 60) for n in range(MAX_BATCH_ITEMS + 10)]
    await store.add_pending_positions(tenant_id=acme, endpoint_ids=[hook], message_id="big", items=items, at=NOW)
    assert await store.batch_pending_positions(now=NOW) == 1
    [first] = await positions_deliveries(store, acme, hook)
    assert len(orjson.loads(first.payload)["data"]["items"]) == MAX_BATCH_ITEMS
    await deliver(store, first, NOW)
    assert await store.batch_pending_positions(now=NOW + 2) == 1
    second = (await positions_deliveries(store, acme, hook))[-1]
    assert orjson.loads(second.payload)["data"]["items"] == [i for _, i in items[MAX_BATCH_ITEMS:]]


async def test_erasing_a_device_drops_its_positions_owed_and_sent(store: Store) -> None:
    kept_device, erased = await add_device(store, OTHER_IMEI), await add_device(store, IMEI)
    acme = erased.tenant_id
    hook = await endpoint(store, acme)
    sent = [item(erased.id, 1, IMEI), item(kept_device.id, 2, OTHER_IMEI)]
    await store.add_pending_positions(tenant_id=acme, endpoint_ids=[hook], message_id="m1", items=sent, at=NOW)
    assert await store.batch_pending_positions(now=NOW) == 1
    [first] = await positions_deliveries(store, acme, hook)
    await deliver(store, first, NOW)
    owed = [item(erased.id, 3, IMEI), item(kept_device.id, 4, OTHER_IMEI), item(erased.id, 5, IMEI)]
    await store.add_pending_positions(tenant_id=acme, endpoint_ids=[hook], message_id="m2", items=owed, at=NOW)

    assert await store.retire_device(erased.id, erase=True)
    assert await store.pending_positions(hook) == [owed[1][1]]
    [first] = await positions_deliveries(store, acme, hook)
    assert IMEI.encode() not in first.payload  # the delivery log keeps no trace of it either
    assert orjson.loads(first.payload)["data"]["items"] == [sent[1][1]]
    assert await store.batch_pending_positions(now=NOW + 5) == 1
    second = (await positions_deliveries(store, acme, hook))[-1]
    assert orjson.loads(second.payload)["data"]["items"] == [owed[1][1]]


async def test_a_deleted_endpoint_takes_its_pending_positions_with_it(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    hook = await endpoint(store, acme)
    await store.add_pending_positions(tenant_id=acme, endpoint_ids=[hook], message_id="m1", items=[item(1, 1)], at=NOW)
    await store.delete_webhook_endpoint(acme, hook)
    assert await store.batch_pending_positions(now=NOW) == 0
    assert await store.pending_positions(hook) == []


# -- MongoDB: a batch stopped half way is redone with the same rows and id -------------------


class Stopped(Exception):
    """The process 'stops' here."""


def mongo_only(store: Store) -> MongoStore:
    adapter = getattr(store, "_store", store)  # the emulator's wrapper keeps the adapter there
    if not isinstance(adapter, MongoStore):
        pytest.skip("a MongoDB batch's recovery: SQLite makes a batch in one transaction")
    return adapter


@pytest.mark.parametrize("stop_at", ["webhook_deliveries", "webhook_positions_last"])
async def test_mongo_a_batch_stopped_half_way_is_redone_as_the_same_event(
    store: Store, monkeypatch: pytest.MonkeyPatch, stop_at: str
) -> None:
    mongo = mongo_only(store)
    acme = await store.ensure_tenant("acme")
    hook = await endpoint(store, acme)
    await store.add_pending_positions(
        tenant_id=acme, endpoint_ids=[hook], message_id="m1", items=[item(1, 1), item(2, 2)], at=NOW
    )
    collection = type(mongo._db[stop_at])
    real_update_one = collection.update_one
    stopped_collection = mongo._db[stop_at].name

    async def stop(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.name == stopped_collection:
            raise Stopped
        return await real_update_one(self, *args, **kwargs)

    monkeypatch.setattr(collection, "update_one", stop)
    with pytest.raises(Stopped):
        await store.batch_pending_positions(now=NOW)
    monkeypatch.undo()
    # Meanwhile another message came: it is not slipped into the batch already made.
    await store.add_pending_positions(tenant_id=acme, endpoint_ids=[hook], message_id="m2", items=[item(1, 3)], at=NOW)

    await store.batch_pending_positions(now=NOW + 1)
    deliveries = await positions_deliveries(store, acme, hook)
    first = deliveries[0]
    assert orjson.loads(first.payload)["data"]["items"] == [item(1, 1)[1], item(2, 2)[1]]
    assert len(deliveries) == 1  # the redone batch is still owed: m2 waits
    assert await store.pending_positions(hook) == [item(1, 3)[1]]
    await deliver(store, first, NOW + 2)
    assert await store.batch_pending_positions(now=NOW + 5) == 1
    second = (await positions_deliveries(store, acme, hook))[-1]
    assert orjson.loads(second.payload)["data"]["items"] == [item(1, 3)[1]]

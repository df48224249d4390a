"""Server-detected alerts (shared/store/detections.py), for every store adapter."""

from __future__ import annotations

import asyncio

from shared.bus.topics import TOPIC_ALERT
from shared.store import Store
from shared.store.detections import SYSTEM_ACTOR, DetectedCondition
from tests.contract.store_data import add_device, outbox


async def _offline(store: Store) -> DetectedCondition:
    device = await add_device(store)
    return DetectedCondition(
        key=f"offline:{device.id}",
        tenant_id=device.tenant_id,
        device_id=device.id,
        imei=device.imei,
        kind="offline",
        ts=1_800_000_000,
        lat=43.6,
        lon=7.05,
        battery=40,
        detail={"silent_for_s": 600},
    )


async def test_a_condition_raises_one_alert_however_often_it_is_raised(store: Store) -> None:
    condition = await _offline(store)
    results = await asyncio.gather(*(store.raise_detected_alert(condition) for _ in range(10)))
    assert sum(created for _, created in results) == 1
    assert len({alert.id for alert, _ in results}) == 1
    alert = results[0][0]
    assert (alert.kind, alert.imei, alert.status, alert.ts, alert.lat, alert.alarm_id) == (
        "offline",
        condition.imei,
        "open",
        1_800_000_000,
        43.6,
        None,
    )
    created = [m for m in await outbox(store, TOPIC_ALERT) if m["event"] == "created"]
    assert [m["alert"]["id"] for m in created] == [alert.id]
    [raised] = await store.alert_timeline(alert.tenant_id, alert.id)
    assert (raised.action, raised.actor, raised.detail["silent_for_s"]) == ("raised", SYSTEM_ACTOR, 600)


async def test_clearing_resolves_it_and_the_next_episode_is_a_new_alert(store: Store) -> None:
    condition = await _offline(store)
    first, _ = await store.raise_detected_alert(condition)
    cleared = await store.clear_detected_alert(condition.key, note="device back online")
    assert cleared is not None and (cleared.status, cleared.resolved_by) == ("resolved", SYSTEM_ACTOR)
    assert cleared.resolution_note == "device back online"
    assert await store.clear_detected_alert(condition.key, note="again") is None

    second, created = await store.raise_detected_alert(condition)
    assert created and second.id != first.id
    events = [(m["event"], m["alert"]["id"]) for m in await outbox(store, TOPIC_ALERT)]
    assert events == [("created", first.id), ("resolved", first.id), ("created", second.id)]


async def test_an_alert_a_person_resolved_frees_its_condition(store: Store) -> None:
    condition = await _offline(store)
    first, _ = await store.raise_detected_alert(condition)
    await store.resolve_alert(first.tenant_id, first.id, by="ops@acme.example", note="called him")
    second, created = await store.raise_detected_alert(condition)
    assert created and second.id != first.id
    # Acknowledged is still active: the same alert.
    await store.acknowledge_alert(second.tenant_id, second.id, by="ops@acme.example")
    again, created = await store.raise_detected_alert(condition)
    assert not created and again.id == second.id and again.status == "acknowledged"


async def test_conditions_are_told_apart_by_key(store: Store) -> None:
    condition = await _offline(store)
    offline, _ = await store.raise_detected_alert(condition)
    battery = DetectedCondition(
        key=f"low_battery:{condition.device_id}",
        tenant_id=condition.tenant_id,
        device_id=condition.device_id,
        imei=condition.imei,
        kind="low_battery",
        ts=condition.ts,
        battery=12,
    )
    low, created = await store.raise_detected_alert(battery)
    assert created and low.id != offline.id and low.kind == "low_battery"
    assert await store.clear_detected_alert(battery.key, note="charged") is not None
    assert (await store.alert(offline.tenant_id, offline.id)).status == "open"  # type: ignore[union-attr]
    assert low.battery == 12

"""`AlertStore.alerts_raised` and `alert_escalations` in every adapter: what the alerts report
(CONTRACT §9) reads, a tenant's alerts raised in a range and how often each escalated.
Only port methods are used. Each test gets a fresh, empty store."""

from __future__ import annotations

from shared.protocols.xsole import AlarmKind
from shared.store import Store
from shared.store.alerts import Alert
from tests.contract.store_data import OTHER_IMEI, TS, add_device, raised_alert


def ids(alerts: list[Alert]) -> list[int]:
    return [a.id for a in alerts]


async def test_alerts_raised_in_a_half_open_range_oldest_first(store: Store) -> None:
    device = await add_device(store)
    second = await add_device(store, "356307042441039", name="Bob")
    other_tenants = await add_device(store, OTHER_IMEI, tenant="globex")
    late = await raised_alert(store, device, 300)
    early = await raised_alert(store, device, 10, kind=AlarmKind.FALL)
    bobs = await raised_alert(store, second, 200)
    await raised_alert(store, other_tenants, 100)
    tenant = device.tenant_id

    # Oldest first by when it happened (`ts`), not by id.
    assert ids(await store.alerts_raised(tenant, since=TS, until=TS + 1000)) == [early.id, bobs.id, late.id]
    # `since` inclusive, `until` exclusive.
    assert ids(await store.alerts_raised(tenant, since=TS + 200, until=TS + 300)) == [bobs.id]
    assert ids(await store.alerts_raised(tenant, since=TS + 10, until=TS + 201)) == [early.id, bobs.id]
    assert await store.alerts_raised(tenant, since=TS + 301, until=TS + 1000) == []
    # One device's.
    assert ids(await store.alerts_raised(tenant, since=TS, until=TS + 1000, device_id=device.id)) == [
        early.id,
        late.id,
    ]
    # Another tenant's never show.
    assert ids(await store.alerts_raised(other_tenants.tenant_id, since=TS, until=TS + 1000)) != []
    assert other_tenants.id not in {a.device_id for a in await store.alerts_raised(tenant, since=TS, until=TS + 1000)}
    # The alert keeps its own fields, status changes included.
    acknowledged = await store.acknowledge_alert(tenant, early.id, by="sam")
    [again] = await store.alerts_raised(tenant, since=TS + 10, until=TS + 11)
    assert again == acknowledged and again.kind == "fall"


async def test_a_retired_devices_alerts_stay_in_the_tenants_range(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device, 5)
    assert await store.retire_device(device.id)
    assert ids(await store.alerts_raised(device.tenant_id, since=TS, until=TS + 100)) == [alert.id]


async def test_escalations_are_counted_per_alert(store: Store) -> None:
    device = await add_device(store)
    twice, once, never = [await raised_alert(store, device, seq) for seq in (1, 2, 3)]
    for alert_id, step in ((twice.id, 2), (twice.id, 3), (once.id, 2)):
        await store.add_alert_event(alert_id, action="escalated", actor=None, detail={"step": step})
    # Other timeline lines are not escalations.
    await store.add_alert_event(never.id, action="notified", actor=None, detail={})

    assert await store.alert_escalations([twice.id, once.id, never.id]) == {twice.id: 2, once.id: 1}
    assert await store.alert_escalations([once.id]) == {once.id: 1}
    assert await store.alert_escalations([]) == {}

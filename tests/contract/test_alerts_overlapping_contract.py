"""`AlertStore.alerts_overlapping` in every adapter: a device's alerts whose time overlaps a range,
what the location visibility (services/visibility, CONTRACT §8) reads to know which positions
an alert lets be seen. Only port methods are used. Each test gets a fresh, empty store."""

from __future__ import annotations

from shared.store import Store
from shared.store.alerts import Alert
from tests.contract.store_data import OTHER_IMEI, TS, add_device, raised_alert


async def test_a_devices_alerts_overlapping_a_range_oldest_first(store: Store) -> None:
    device, other = await add_device(store), await add_device(store, OTHER_IMEI, tenant="globex")
    resolved = await raised_alert(store, device, 1)
    acknowledged = await raised_alert(store, device, 100)
    still_open = await raised_alert(store, device, 5000)
    theirs = await raised_alert(store, other, 50)
    resolved = await store.resolve_alert(device.tenant_id, resolved.id, by="test") or resolved
    acknowledged = await store.acknowledge_alert(device.tenant_id, acknowledged.id, by="test") or acknowledged
    assert resolved.resolved_at is not None and acknowledged.status == "acknowledged"

    def ids(alerts: list[Alert]) -> list[int]:
        return [a.id for a in alerts]

    assert ids(await store.alerts_overlapping([device.id])) == [resolved.id, acknowledged.id, still_open.id]
    assert ids(await store.alerts_overlapping([device.id, other.id])) == [
        resolved.id,
        theirs.id,
        acknowledged.id,
        still_open.id,
    ]
    assert await store.alerts_overlapping([]) == []
    # raised at or before `end` (inclusive)
    assert ids(await store.alerts_overlapping([device.id], end=TS + 99)) == [resolved.id]
    assert ids(await store.alerts_overlapping([device.id], end=TS + 100)) == [resolved.id, acknowledged.id]
    assert await store.alerts_overlapping([device.id], end=TS) == []
    # not resolved before `start` (inclusive); open and acknowledged ones whatever `start`
    assert ids(await store.alerts_overlapping([device.id], start=resolved.resolved_at)) == [
        resolved.id,
        acknowledged.id,
        still_open.id,
    ]
    later = resolved.resolved_at + 0.5
    assert ids(await store.alerts_overlapping([device.id], start=later)) == [acknowledged.id, still_open.id]
    assert ids(await store.alerts_overlapping([device.id], start=later, end=TS + 4999)) == [acknowledged.id]
    # the alert keeps its own fields
    [again] = await store.alerts_overlapping([device.id], start=later, end=TS + 100)
    assert again == acknowledged

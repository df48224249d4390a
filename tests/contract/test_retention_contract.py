"""Retention (shared/store/retention.py) for every store adapter: telemetry past a cut-off
and alerts resolved before one are deleted in chunks, everything else stays, and a
second purge finds nothing more. `purge_expired` gives each tenant its own retention."""

from __future__ import annotations

import time

from services.notifications.purge import DAY_S, purge_expired
from shared.protocols.xsole import Activity, Heartbeat, Position
from shared.protocols.xsole.bulk import read_run
from shared.protocols.xsole.messages import encode
from shared.store import Device, Store
from shared.store.batch import BatchBuilder, DeviceRef
from shared.store.retention import PurgeChunk
from shared.store.tenant_settings import TenantSettings
from tests.contract.store_data import OTHER_IMEI, add_device, frame, position, raised_alert
from tests.helpers.stored import commit_frames

NOW = int(time.time())
CUT = NOW - 7 * DAY_S


def kinds_at(seq: int, ts: int) -> list[Position | Heartbeat | Activity]:
    """A position, a heartbeat and an activity at device time `ts`, from sequence number `seq` on."""
    return [position(seq, ts), Heartbeat(seq + 1, ts, 80, -70), Activity(seq + 2, ts, 10, 2, 90, 80, 0)]


async def store_telemetry(store: Store, device: Device, *times: int, seq: int = 1) -> None:
    """A position, a heartbeat and an activity at each device time, committed as one batch."""
    events = []
    for offset, ts in enumerate(times):
        events += kinds_at(seq + 3 * offset, ts)
    await commit_frames(store, [frame(device, event) for event in events])


async def store_as_one_run(store: Store, device: Device, *times: int) -> None:
    """A position, a heartbeat and an activity at each device time, as one run read from the
    connection (the listener's fast path; SQLite keeps it as one row)."""
    events = []
    for n, ts in enumerate(times):
        events += kinds_at(3 * n + 1, ts)
    batch = BatchBuilder()
    batch.add_run(DeviceRef(device.id, device.tenant_id, device.imei), read_run(b"".join(map(encode, events))), NOW)
    await store.commit_telemetry(batch.build())


async def times(store: Store, device: Device) -> tuple[list[int], list[int], list[int]]:
    return (
        [p.ts for p in await store.positions(device.id, limit=1000)],
        [h.ts for h in await store.heartbeats(device.id, limit=1000)],
        [a.ts for a in await store.activities(device.id, limit=1000)],
    )


async def drain(store: Store, tenant_id: int | None, before: int, limit: int = 500) -> tuple[dict[str, int], int]:
    """Purge chunk after chunk until nothing is left: the total deleted, and how many chunks it took."""
    total: dict[str, int] = {}
    for calls in range(1, 1000):
        chunk = await store.purge_telemetry(tenant_id, before, limit=limit)
        for kind, count in chunk.deleted.items():
            total[kind] = total.get(kind, 0) + count
        if not chunk.more:
            return total, calls
    raise AssertionError("the purge never finished")


async def test_telemetry_before_the_cut_off_goes_and_newer_stays(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI, tenant="globex")
    old, older, recent = CUT - DAY_S, CUT - 5 * DAY_S, NOW - DAY_S
    # Separate commits: separate runs, none straddling the cut-off.
    for n, ts in enumerate((older, old, recent)):
        await store_telemetry(store, device, ts, seq=10 * n + 1)
        await store_telemetry(store, other, ts, seq=10 * n + 1)

    deleted, _ = await drain(store, device.tenant_id, CUT)
    assert deleted == {"positions": 2, "heartbeats": 2, "activities": 2}
    assert await times(store, device) == ([recent], [recent], [recent])
    assert await times(store, other) == ([older, old, recent],) * 3  # another tenant's, untouched

    assert await drain(store, device.tenant_id, CUT) == ({}, 1)  # again: nothing more
    assert await store.purge_telemetry(device.tenant_id, CUT) == PurgeChunk({}, False)


async def test_a_run_straddling_the_cut_off_keeps_only_its_newer_frames(store: Store) -> None:
    device = await add_device(store)
    await store_as_one_run(store, device, CUT - 120, CUT - 1, CUT, CUT + 60)

    deleted, _ = await drain(store, device.tenant_id, CUT)
    assert deleted == {"positions": 2, "heartbeats": 2, "activities": 2}
    assert await times(store, device) == ([CUT, CUT + 60],) * 3
    assert await drain(store, device.tenant_id, CUT) == ({}, 1)
    # What was kept is still found by a range read, and a retransmission is still stored once.
    assert [p.ts for p in await store.positions(device.id, since=CUT, until=CUT)] == [CUT]
    await store_telemetry(store, device, CUT - 120, CUT - 1, CUT, CUT + 60)
    assert (await times(store, device))[0] == [CUT - 120, CUT - 1, CUT, CUT + 60]


async def test_a_small_chunk_deletes_everything_in_several_chunks(store: Store) -> None:
    device = await add_device(store)
    for n in range(30):
        await store_telemetry(store, device, CUT - DAY_S - 60 * n, seq=3 * n + 1)
    await store_telemetry(store, device, NOW, seq=500)

    deleted, chunks = await drain(store, device.tenant_id, CUT, limit=7)
    assert deleted == {"positions": 30, "heartbeats": 30, "activities": 30}
    assert chunks >= 5  # 30 runs (SQLite) or 30 documents a collection (MongoDB), 7 at a time
    assert await times(store, device) == ([NOW],) * 3


async def test_telemetry_of_a_retired_device_is_purged_without_a_tenant(store: Store) -> None:
    retired = await add_device(store)
    kept = await add_device(store, OTHER_IMEI)
    await store_telemetry(store, retired, CUT - DAY_S, NOW)
    await store_telemetry(store, kept, CUT - DAY_S, NOW)
    assert await store.retire_device(retired.id)

    assert (await drain(store, None, CUT))[0] == {"positions": 1, "heartbeats": 1, "activities": 1}
    assert await times(store, retired) == ([NOW],) * 3
    assert await times(store, kept) == ([CUT - DAY_S, NOW],) * 3  # registered: its tenant's purge decides


async def test_resolved_alerts_past_the_cut_off_go_with_their_records_open_and_acknowledged_never(
    store: Store,
) -> None:
    device = await add_device(store)
    tenant = device.tenant_id
    contact = await store.add_contact(tenant_id=tenant, name="Bob", email=None, phone="+33612345678", kinds=())
    open_, acked, resolved = [await raised_alert(store, device, seq) for seq in (1, 2, 3)]
    await store.acknowledge_alert(tenant, acked.id, by="ana")
    for alert in (open_, acked, resolved):
        assert await store.claim_notification(alert_id=alert.id, contact_id=contact.id, channel="sms", step=0)
        await store.add_alert_event(alert.id, action="notified", actor=None, detail={"contact": "Bob"})
    await store.resolve_alert(tenant, resolved.id, by="ana")
    timeline = len(await store.alert_timeline(tenant, resolved.id))

    # Resolved just now: not yet past a cut-off in the past.
    assert await store.purge_alerts(tenant, time.time() - 60) == PurgeChunk({}, False)
    assert (await store.alert(tenant, resolved.id)) is not None

    chunk = await store.purge_alerts(tenant, time.time() + 1)
    assert chunk == PurgeChunk({"alerts": 1, "alert_events": timeline, "notifications": 1}, False)
    assert await store.alert(tenant, resolved.id) is None
    assert await store.alert_timeline(tenant, resolved.id) == []
    assert await store.notifications_of(tenant, resolved.id) == []
    for alert in (open_, acked):  # never purged, however old
        assert await store.alert(tenant, alert.id) is not None
        assert len(await store.notifications_of(tenant, alert.id)) == 1
        assert await store.alert_timeline(tenant, alert.id)
    assert await store.purge_alerts(tenant, time.time() + 1) == PurgeChunk({}, False)  # again: nothing


async def test_alerts_are_purged_in_chunks_and_per_tenant(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI, tenant="globex")
    for seq in range(1, 6):
        alert = await raised_alert(store, device, seq)
        await store.resolve_alert(device.tenant_id, alert.id, by="ana")
    theirs = await raised_alert(store, other, 9)
    await store.resolve_alert(other.tenant_id, theirs.id, by="ana")

    sizes = []
    while True:
        chunk = await store.purge_alerts(device.tenant_id, time.time() + 1, limit=2)
        sizes.append(chunk.deleted.get("alerts", 0))
        if not chunk.more:
            break
    assert sum(sizes) == 5 and max(sizes) == 2
    assert await store.alerts(device.tenant_id) == []
    assert [a.id for a in await store.alerts(other.tenant_id)] == [theirs.id]


async def test_purge_expired_gives_each_tenant_its_own_retention(store: Store) -> None:
    acme = await add_device(store)
    globex = await add_device(store, OTHER_IMEI, tenant="globex")
    await store.set_tenant_settings(acme.tenant_id, TenantSettings(telemetry_retention_days=3, alert_retention_days=30))
    for device in (acme, globex):  # globex keeps the defaults: 90 and 730 days
        await store_telemetry(store, device, NOW - 10 * DAY_S, NOW - DAY_S)
        alert = await raised_alert(store, device, 1)
        await store.resolve_alert(device.tenant_id, alert.id, by="ana")

    report = await purge_expired(store, now=NOW)
    assert report["tenants"]["acme"] == {
        "positions": 1,
        "heartbeats": 1,
        "activities": 1,
        "alerts": 0,
        "alert_events": 0,
        "notifications": 0,
    }
    assert not any(report["tenants"]["globex"].values())
    assert report["unregistered_devices"] == {"positions": 0, "heartbeats": 0, "activities": 0}
    assert await times(store, acme) == ([NOW - DAY_S],) * 3
    assert await times(store, globex) == ([NOW - 10 * DAY_S, NOW - DAY_S],) * 3
    assert all(not any(counts.values()) for counts in (await purge_expired(store, now=NOW))["tenants"].values())

    # 31 days on: acme's alert is past its 30 days, globex's far from its 730, its telemetry from its 90.
    report = await purge_expired(store, now=NOW + 31 * DAY_S, chunk=2)
    assert report["tenants"]["acme"]["alerts"] == 1 and report["tenants"]["acme"]["positions"] == 1
    assert not any(report["tenants"]["globex"].values())
    assert await store.alerts(acme.tenant_id) == []
    assert len(await store.alerts(globex.tenant_id)) == 1
    assert await times(store, globex) == ([NOW - 10 * DAY_S, NOW - DAY_S],) * 3

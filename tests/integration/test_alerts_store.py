"""The alerting half of the SQLite store: alerts, transitions, outbox, timeline, contacts, claims.

Every test runs on a real SqliteStore in a temporary directory.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from shared.alerts import alert_to_api
from shared.alerts.ledger import NotificationRecovery
from shared.bus.topics import TOPIC_ALARM, TOPIC_ALERT
from shared.protocols.xsole import Alarm
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.store import Device, FrameRecord, hash_device_token
from shared.store.alerts import AlertTransitionRefused
from shared.store.sqlite import SqliteStore
from tests.helpers.stored import commit_frames

TS = 1767225600  # 2026-01-01T00:00:00Z


async def add_device(store: SqliteStore, imei: str, *, tenant: str = "acme") -> Device:
    tenant_id = await store.ensure_tenant(tenant)
    return await store.add_device(
        tenant_id=tenant_id, imei=imei, name=f"worker {imei[-4:]}", token_hash=hash_device_token(imei.encode())
    )


def alarm(device: Device, alarm_id: int, *, kind: str = "sos", fix: bool = True) -> dict[str, Any]:
    """An `alarm` bus message as shared/store/messages.py writes it."""
    return {
        "alarm_id": alarm_id,
        "tenant_id": device.tenant_id,
        "device_id": device.id,
        "imei": device.imei,
        "kind": kind,
        "ts": TS + alarm_id,
        "device_ts": TS + alarm_id,
        "seq": alarm_id,
        "lat": 43.6163 if fix else None,
        "lon": 7.0553 if fix else None,
        "battery": 87,
        "buffered": False,
        "received_at": time.time(),
    }


async def alert_messages(store: SqliteStore) -> list[dict[str, Any]]:
    return [orjson.loads(e.payload) for e in await store.outbox_pending(1000) if e.topic == TOPIC_ALERT]


async def test_an_alarm_frame_becomes_exactly_one_alert(store):
    device = await add_device(store, "356307042441013")
    event = Alarm(seq=7, ts=TS, kind=2, lat_e7=436163000, lon_e7=70553000, battery=55, flags=FLAG_FIX_VALID)
    await commit_frames(store, [FrameRecord(device.id, device.tenant_id, device.imei, event, time.time())])
    [entry] = [e for e in await store.outbox_pending(10) if e.topic == TOPIC_ALARM]
    message = orjson.loads(entry.payload)

    alert, created = await store.raise_alert_from_alarm(message)
    again, created_again = await store.raise_alert_from_alarm(message)

    assert (created, created_again) == (True, False)
    assert again == alert
    assert (alert.kind, alert.ts, alert.lat, alert.lon, alert.battery, alert.status) == (
        "fall",
        TS,
        43.6163,
        7.0553,
        55,
        "open",
    )
    assert (alert.tenant_id, alert.device_id, alert.imei, alert.alarm_id) == (
        device.tenant_id,
        device.id,
        device.imei,
        message["alarm_id"],
    )
    assert await store.alerts(device.tenant_id) == [alert]
    [created_message] = await alert_messages(store)
    assert created_message == {"event": "created", "tenant_id": device.tenant_id, "alert": alert_to_api(alert)}
    [raised] = await store.alert_timeline(device.tenant_id, alert.id)
    assert (raised.action, raised.actor, raised.detail) == (
        "raised",
        None,
        {"alarm_id": message["alarm_id"], "kind": "fall"},
    )


async def test_an_alarm_without_a_fix_has_no_location(store):
    device = await add_device(store, "356307042441013")
    alert, _ = await store.raise_alert_from_alarm(alarm(device, 1, fix=False))
    assert (alert.lat, alert.lon) == (None, None)
    assert alert_to_api(alert)["lat"] is None


async def test_alert_api_shape(store):
    device = await add_device(store, "356307042441013")
    alert, _ = await store.raise_alert_from_alarm(alarm(device, 1))
    api = alert_to_api(alert)
    assert list(api) == [
        "id",
        "imei",
        "kind",
        "ts",
        "lat",
        "lon",
        "battery",
        "status",
        "created_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "resolved_by",
        "resolution_note",
    ]
    assert api["ts"] == "2026-01-01T00:00:01Z"
    assert api["created_at"].endswith("Z") and api["acknowledged_at"] is None
    orjson.dumps(api)  # plain JSON types only


async def test_open_acknowledged_resolved_and_who_did_it(store):
    device = await add_device(store, "356307042441013")
    alert, _ = await store.raise_alert_from_alarm(alarm(device, 1))
    tenant = device.tenant_id

    acked = await store.acknowledge_alert(tenant, alert.id, by="ana@example.com")
    assert acked is not None and acked.status == "acknowledged"
    assert acked.acknowledged_by == "ana@example.com" and acked.acknowledged_at >= alert.created_at
    # Acknowledging again is idempotent: same alert, no new message, no new timeline line.
    assert await store.acknowledge_alert(tenant, alert.id, by="bob@example.com") == acked

    resolved = await store.resolve_alert(tenant, alert.id, by="bob@example.com", note="false alarm, worker fine")
    assert resolved is not None and resolved.status == "resolved"
    assert (resolved.resolved_by, resolved.resolution_note) == ("bob@example.com", "false alarm, worker fine")
    assert resolved.acknowledged_by == "ana@example.com"
    assert await store.resolve_alert(tenant, alert.id, by="carl@example.com") == resolved
    with pytest.raises(AlertTransitionRefused):
        await store.acknowledge_alert(tenant, alert.id, by="carl@example.com")

    assert [m["event"] for m in await alert_messages(store)] == ["created", "acknowledged", "resolved"]
    assert (await alert_messages(store))[-1]["alert"] == alert_to_api(resolved)
    timeline = await store.alert_timeline(tenant, alert.id)
    assert [(e.action, e.actor) for e in timeline] == [
        ("raised", None),
        ("acknowledged", "ana@example.com"),
        ("resolved", "bob@example.com"),
    ]
    assert timeline[2].detail == {"note": "false alarm, worker fine"}
    assert timeline[0].at <= timeline[1].at <= timeline[2].at


async def test_an_open_alert_can_be_resolved_directly(store):
    device = await add_device(store, "356307042441013")
    alert, _ = await store.raise_alert_from_alarm(alarm(device, 1))
    resolved = await store.resolve_alert(device.tenant_id, alert.id, by="ana@example.com")
    assert resolved is not None and resolved.status == "resolved" and resolved.acknowledged_at is None


async def test_timeline_events_added_later(store):
    device = await add_device(store, "356307042441013")
    alert, _ = await store.raise_alert_from_alarm(alarm(device, 1))
    await store.add_alert_event(alert.id, action="notified", actor=None, detail={"channel": "email", "attempts": 2})
    timeline = await store.alert_timeline(device.tenant_id, alert.id)
    assert timeline[-1].action == "notified" and timeline[-1].detail == {"channel": "email", "attempts": 2}


async def test_listing_newest_first_with_cursor_and_filters(store):
    first = await add_device(store, "356307042441013")
    second = await add_device(store, "356307042441021")
    ids = []
    for n in range(1, 8):
        alert, _ = await store.raise_alert_from_alarm(
            alarm(first if n % 2 else second, n, kind="sos" if n < 5 else "fall")
        )
        ids.append(alert.id)
    tenant = first.tenant_id
    await store.acknowledge_alert(tenant, ids[0], by="ana")
    await store.resolve_alert(tenant, ids[1], by="ana")

    page1 = await store.alerts(tenant, limit=3)
    page2 = await store.alerts(tenant, limit=3, before_id=page1[-1].id)
    page3 = await store.alerts(tenant, limit=3, before_id=page2[-1].id)
    assert [a.id for a in page1 + page2 + page3] == ids[::-1]
    assert await store.alerts(tenant, before_id=ids[0]) == []

    assert [a.id for a in await store.alerts(tenant, status="open")] == ids[:1:-1]
    assert [a.id for a in await store.alerts(tenant, status="acknowledged")] == [ids[0]]
    assert [a.id for a in await store.alerts(tenant, status="resolved")] == [ids[1]]
    assert [a.id for a in await store.alerts(tenant, imei=second.imei)] == [ids[5], ids[3], ids[1]]
    assert [a.id for a in await store.alerts(tenant, imei=second.imei, status="open")] == [ids[5], ids[3]]
    # `ts` is the unix time the alarm happened.
    assert (await store.alert(tenant, ids[2])).ts == TS + 3  # type: ignore[union-attr]


async def test_a_tenant_never_reads_another_tenants_alerts_or_contacts(store):
    ours = await add_device(store, "356307042441013", tenant="acme")
    theirs = await add_device(store, "356307042441021", tenant="globex")
    our_alert, _ = await store.raise_alert_from_alarm(alarm(ours, 1))
    their_alert, _ = await store.raise_alert_from_alarm(alarm(theirs, 2))
    our_contact = await store.add_contact(
        tenant_id=ours.tenant_id, name="Ana", email="ana@acme.test", phone=None, kinds=()
    )
    await store.add_contact(tenant_id=theirs.tenant_id, name="Gus", email="gus@globex.test", phone=None, kinds=())

    assert [a.id for a in await store.alerts(ours.tenant_id)] == [our_alert.id]
    assert await store.alert(ours.tenant_id, their_alert.id) is None
    assert await store.acknowledge_alert(ours.tenant_id, their_alert.id, by="ana") is None
    assert await store.resolve_alert(ours.tenant_id, their_alert.id, by="ana") is None
    assert await store.alert_timeline(ours.tenant_id, their_alert.id) == []
    assert (await store.alert(theirs.tenant_id, their_alert.id)).status == "open"  # type: ignore[union-attr]
    assert [c.name for c in await store.contacts(ours.tenant_id)] == ["Ana"]
    assert await store.delete_contact(theirs.tenant_id, our_contact.id) is False
    assert [c.name for c in await store.contacts(ours.tenant_id)] == ["Ana"]
    assert isinstance(store, NotificationRecovery)
    await store.claim_notification(alert_id=our_alert.id, contact_id=our_contact.id, channel="email", step=1)
    assert await store.notifications_of(theirs.tenant_id, our_alert.id) == []
    assert len(await store.notifications_of(ours.tenant_id, our_alert.id)) == 1


async def test_contacts(store):
    tenant = await store.ensure_tenant("acme")
    ana = await store.add_contact(
        tenant_id=tenant, name="Ana", email="ana@acme.test", phone="+33612345678", kinds=("sos", "fall")
    )
    bob = await store.add_contact(tenant_id=tenant, name="Bob", email=None, phone="+33698765432", kinds=())
    assert ana.kinds == ("sos", "fall") and bob.kinds == () and bob.email is None
    assert await store.contacts(tenant) == [ana, bob]
    assert await store.delete_contact(tenant, ana.id) is True
    assert await store.delete_contact(tenant, ana.id) is False
    assert await store.contacts(tenant) == [bob]


async def test_a_notification_is_claimed_exactly_once_by_20_concurrent_claimers(store, tmp_path):
    device = await add_device(store, "356307042441013")
    alert, _ = await store.raise_alert_from_alarm(alarm(device, 1))
    # Half the claimers go through a second store on the same file: another process.
    other = SqliteStore(tmp_path / "solewatch.db", synchronous="NORMAL")
    await other.open()
    try:
        claims = await asyncio.gather(
            *(
                (store if n % 2 else other).claim_notification(alert_id=alert.id, contact_id=5, channel="email", step=1)
                for n in range(20)
            )
        )
    finally:
        await other.close()
    assert claims.count(True) == 1
    # Other keys are independent.
    assert await store.claim_notification(alert_id=alert.id, contact_id=5, channel="sms", step=1)
    assert await store.claim_notification(alert_id=alert.id, contact_id=5, channel="email", step=2)
    assert await store.claim_notification(alert_id=alert.id, contact_id=6, channel="email", step=1)


async def test_unfinished_notifications_are_found_and_taken_over_once(store):
    device = await add_device(store, "356307042441013")
    alert, _ = await store.raise_alert_from_alarm(alarm(device, 1))
    key = {"alert_id": alert.id, "channel": "email", "step": 1}
    for contact_id in (1, 2, 3, 4):
        assert await store.claim_notification(contact_id=contact_id, **key)
    await store.finish_notification(contact_id=1, **key, status="sent", attempts=1)
    await store.finish_notification(contact_id=2, **key, status="failed", attempts=5, error="550 no such user")
    await store.finish_notification(contact_id=3, **key, status="interrupted", attempts=2, error="451 later")
    # 4 stays claimed: its sender may still be at work, until it has been silent long enough.

    assert [r.contact_id for r in await store.unfinished_notifications(stale_before=time.time() - 60)] == [3]
    stale_before = time.time() + 1
    records = await store.unfinished_notifications(stale_before=stale_before)
    assert sorted(r.contact_id for r in records) == [3, 4]
    interrupted = next(r for r in records if r.contact_id == 3)
    assert (interrupted.status, interrupted.attempts, interrupted.error, interrupted.tenant_id) == (
        "interrupted",
        2,
        "451 later",
        device.tenant_id,
    )

    # 4's sender was alive after all: its touch since the listing keeps the claim its own.
    await store.finish_notification(contact_id=4, **key, status="claimed", attempts=1, error="451 later")
    wins = await asyncio.gather(*(store.reclaim_notification(r) for r in records * 10))
    assert wins.count(True) == 1
    assert await store.unfinished_notifications(stale_before=time.time() - 60) == []
    statuses = {r.contact_id: (r.status, r.attempts) for r in await store.notifications_of(device.tenant_id, alert.id)}
    assert statuses == {1: ("sent", 1), 2: ("failed", 5), 3: ("claimed", 2), 4: ("claimed", 1)}


async def test_alerts_survive_a_restart(tmp_path):
    path = tmp_path / "restart.db"
    store = SqliteStore(path)
    await store.open()
    device = await add_device(store, "356307042441013")
    alert, _ = await store.raise_alert_from_alarm(alarm(device, 1))
    await store.acknowledge_alert(device.tenant_id, alert.id, by="ana")
    await store.close()
    reopened = SqliteStore(path)
    await reopened.open()
    try:
        again, created = await reopened.raise_alert_from_alarm(alarm(device, 1))
        assert not created and again.status == "acknowledged"
    finally:
        await reopened.close()

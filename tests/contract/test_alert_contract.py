"""The alerts half of the alerting port (shared/store/alerts.py, and the NotificationRecovery of
shared/alerts/ledger.py) for every adapter in STORE_FACTORIES: alerts raised from alarms and
their changes, timelines, contacts, notifications and their delivery status. Escalation,
detections, push and SMS replies, the rest of the port, have suites of their own.

Only port methods are used, never an adapter's tables. Each test gets a fresh, empty store.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shared.alerts.ledger import NotificationKey, NotificationRecovery
from shared.bus.topics import TOPIC_ALARM, TOPIC_ALERT
from shared.protocols.xsole import AlarmKind
from shared.store import Store
from shared.store.alerts import Alert, AlertTransitionRefused
from tests.contract.store_data import IMEI, OTHER_IMEI, TS, add_device, frame, outbox, raised_alert, sos
from tests.helpers.stored import commit_frames


async def test_an_alarm_raises_one_alert_however_often_it_is_delivered(store: Store) -> None:
    device = await add_device(store)
    await commit_frames(store, [frame(device, sos(1, TS + 1, kind=AlarmKind.FALL))])
    [message] = await outbox(store, TOPIC_ALARM)

    results = await asyncio.gather(*(store.raise_alert_from_alarm(message) for _ in range(20)))
    assert sorted(created for _, created in results) == [False] * 19 + [True]
    alert = results[0][0]
    assert all(a == alert for a, _ in results)
    assert (alert.tenant_id, alert.device_id, alert.imei, alert.kind, alert.ts, alert.status, alert.alarm_id) == (
        device.tenant_id,
        device.id,
        IMEI,
        "fall",
        TS + 1,
        "open",
        message["alarm_id"],
    )
    assert (alert.lat, alert.lon, alert.battery) == (43.6163, 7.0553, 55)
    assert await store.alerts(device.tenant_id) == [alert]
    assert await store.alert(device.tenant_id, alert.id) == alert

    assert [(m["event"], m["tenant_id"], m["alert"]["id"]) for m in await outbox(store, TOPIC_ALERT)] == [
        ("created", device.tenant_id, alert.id)
    ]
    [raised] = await store.alert_timeline(device.tenant_id, alert.id)
    assert (raised.alert_id, raised.action, raised.actor) == (alert.id, "raised", None)


async def test_acknowledge_then_resolve(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    tenant = device.tenant_id

    acked = await store.acknowledge_alert(tenant, alert.id, by="ana@acme.example")
    assert acked is not None
    assert (acked.status, acked.acknowledged_by) == ("acknowledged", "ana@acme.example")
    assert acked.acknowledged_at is not None and acked.acknowledged_at >= alert.created_at
    # Acknowledging again changes nothing: the first acknowledgement stands.
    assert await store.acknowledge_alert(tenant, alert.id, by="bob@acme.example") == acked

    resolved = await store.resolve_alert(tenant, alert.id, by="bob@acme.example", note="worker fine")
    assert resolved is not None
    assert (resolved.status, resolved.resolved_by, resolved.resolution_note) == (
        "resolved",
        "bob@acme.example",
        "worker fine",
    )
    assert resolved.acknowledged_by == "ana@acme.example" and resolved.resolved_at is not None
    assert await store.resolve_alert(tenant, alert.id, by="carl@acme.example") == resolved
    with pytest.raises(AlertTransitionRefused):
        await store.acknowledge_alert(tenant, alert.id, by="carl@acme.example")
    assert await store.alert(tenant, alert.id) == resolved

    # One timeline line and one `alert` message per change, as stored.
    timeline = await store.alert_timeline(tenant, alert.id)
    assert [(e.action, e.actor) for e in timeline] == [
        ("raised", None),
        ("acknowledged", "ana@acme.example"),
        ("resolved", "bob@acme.example"),
    ]
    assert timeline[0].at <= timeline[1].at <= timeline[2].at
    messages = await outbox(store, TOPIC_ALERT)
    assert [(m["event"], m["alert"]["status"]) for m in messages] == [
        ("created", "open"),
        ("acknowledged", "acknowledged"),
        ("resolved", "resolved"),
    ]
    assert messages[-1]["alert"]["resolved_by"] == "bob@acme.example"


async def test_an_open_alert_can_be_resolved_directly(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    resolved = await store.resolve_alert(device.tenant_id, alert.id, by="ana@acme.example")
    assert resolved is not None
    assert (resolved.status, resolved.acknowledged_at, resolved.resolution_note) == ("resolved", None, None)


async def test_unknown_alerts(store: Store) -> None:
    device = await add_device(store)
    assert await store.alert(device.tenant_id, 12345) is None
    assert await store.acknowledge_alert(device.tenant_id, 12345, by="ana") is None
    assert await store.resolve_alert(device.tenant_id, 12345, by="ana") is None
    assert await store.alert_timeline(device.tenant_id, 12345) == []


async def test_timeline_lines_added_later(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    await store.add_alert_event(alert.id, action="notified", actor=None, detail={"channel": "email", "attempts": 2})
    await store.add_alert_event(
        alert.id, action="notification_failed", actor="smtp", detail={"error": "timeout", "nested": {"a": [1, 2]}}
    )
    timeline = await store.alert_timeline(device.tenant_id, alert.id)
    assert [(e.action, e.actor, e.detail) for e in timeline[1:]] == [
        ("notified", None, {"channel": "email", "attempts": 2}),
        ("notification_failed", "smtp", {"error": "timeout", "nested": {"a": [1, 2]}}),
    ]


async def test_alerts_newest_first_with_cursor_and_filters(store: Store) -> None:
    first = await add_device(store)
    second = await add_device(store, OTHER_IMEI, name="Bob")
    ids = []
    for n in range(1, 8):
        alert = await raised_alert(
            store, first if n % 2 else second, n, kind=AlarmKind.SOS if n < 5 else AlarmKind.FALL
        )
        ids.append(alert.id)
    tenant = first.tenant_id
    await store.acknowledge_alert(tenant, ids[0], by="ana")
    await store.resolve_alert(tenant, ids[1], by="ana")

    assert [a.id for a in await store.alerts(tenant)] == ids[::-1]
    walked: list[int] = []
    before: int | None = None
    while page := await store.alerts(tenant, before_id=before, limit=3):
        assert len(page) <= 3
        walked += [a.id for a in page]
        before = page[-1].id
    assert walked == ids[::-1]

    assert [a.id for a in await store.alerts(tenant, status="open")] == ids[:1:-1]
    assert [a.id for a in await store.alerts(tenant, status="acknowledged")] == [ids[0]]
    assert [a.id for a in await store.alerts(tenant, status="resolved")] == [ids[1]]
    assert [a.id for a in await store.alerts(tenant, imei=OTHER_IMEI)] == [ids[5], ids[3], ids[1]]
    assert [a.id for a in await store.alerts(tenant, imei=OTHER_IMEI, status="open")] == [ids[5], ids[3]]
    assert [a.id for a in await store.alerts(tenant, status="open", before_id=ids[5], limit=2)] == [ids[4], ids[3]]
    assert await store.alerts(tenant, imei="000000000000000") == []


# -- contacts and notifications ------------------------------------------------------------


async def test_contacts(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    ana = await store.add_contact(
        tenant_id=tenant, name="Ana", email="ana@acme.example", phone="+33612345678", kinds=("sos", "fall")
    )
    bob = await store.add_contact(tenant_id=tenant, name="Bob", email=None, phone="+33698765432", kinds=())
    assert (ana.tenant_id, ana.name, ana.email, ana.phone, ana.kinds) == (
        tenant,
        "Ana",
        "ana@acme.example",
        "+33612345678",
        ("sos", "fall"),
    )
    assert (bob.email, bob.kinds) == (None, ())
    assert await store.contacts(tenant) == [ana, bob]
    assert await store.delete_contact(tenant, ana.id) is True
    assert await store.delete_contact(tenant, ana.id) is False
    assert await store.contacts(tenant) == [bob]


async def test_claim_notification_has_exactly_one_winner(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    contact = await store.add_contact(
        tenant_id=device.tenant_id, name="Ana", email="ana@acme.example", phone=None, kinds=("sos",)
    )
    key = NotificationKey(alert.id, contact.id, "email", 1)

    claims = await asyncio.gather(*(store.claim_notification(**key._asdict()) for _ in range(50)))
    assert claims.count(True) == 1
    assert await store.claim_notification(**key._asdict()) is False
    # Another channel, step or contact is another notification.
    for other in (key._replace(channel="sms"), key._replace(step=2), key._replace(contact_id=contact.id + 1)):
        assert await store.claim_notification(**other._asdict()) is True


async def test_notification_records_and_recovery(store: Store) -> None:
    if not isinstance(store, NotificationRecovery):
        pytest.skip("this store does not offer NotificationRecovery")
    device = await add_device(store)
    alert = await raised_alert(store, device)
    tenant = device.tenant_id
    keys = [NotificationKey(alert.id, contact_id, "email", 1)._asdict() for contact_id in (1, 2, 3)]
    for key in keys:
        assert await store.claim_notification(**key)
    await store.finish_notification(**keys[0], status="sent", attempts=1)
    await store.finish_notification(**keys[1], status="interrupted", attempts=2, error="draining")

    records = await store.notifications_of(tenant, alert.id)
    assert [(r.contact_id, r.status, r.attempts, r.error, r.tenant_id) for r in records] == [
        (1, "sent", 1, None, tenant),
        (2, "interrupted", 2, "draining", tenant),
        (3, "claimed", 0, None, tenant),
    ]

    # Interrupted ones always; claimed ones once nobody touched them since `stale_before`.
    assert [r.contact_id for r in await store.unfinished_notifications(stale_before=time.time() - 60)] == [2]
    unfinished = await store.unfinished_notifications(stale_before=time.time() + 60)
    assert [r.contact_id for r in unfinished] == [3, 2]  # oldest first: 3 was last touched when claimed

    [stale] = [r for r in unfinished if r.contact_id == 3]
    wins = await asyncio.gather(*(store.reclaim_notification(stale) for _ in range(20)))
    assert wins.count(True) == 1
    # A sender that touched its claim after it was listed keeps it.
    [interrupted] = [r for r in unfinished if r.contact_id == 2]
    await store.finish_notification(**keys[1], status="claimed", attempts=3)
    assert await store.reclaim_notification(interrupted) is False


# -- delivery status of notifications (SMS through Twilio) -------------------------------------


async def delivery_lines(store: Store, alert: Alert) -> list[dict[str, Any]]:
    return [e.detail for e in await store.alert_timeline(alert.tenant_id, alert.id) if e.action == "delivery_status"]


async def test_delivery_status_reaches_the_notification_with_that_provider_id(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    ana = await store.add_contact(tenant_id=device.tenant_id, name="Ana", email=None, phone="+33612345678", kinds=())
    key = NotificationKey(alert.id, ana.id, "sms", 1)._asdict()
    assert await store.claim_notification(**key)
    await store.finish_notification(**key, status="sent", attempts=1, provider_id="SM0001")

    assert await store.record_delivery_status(provider_id="SM0001", status="sent", error_code=None) == alert.id
    assert (
        await store.record_delivery_status(provider_id="SM0001", status="undelivered", error_code="30003") == alert.id
    )
    assert await delivery_lines(store, alert) == [
        {"status": "sent", "channel": "sms", "contact_id": ana.id, "contact": "Ana", "provider_id": "SM0001"},
        {
            "status": "undelivered",
            "channel": "sms",
            "contact_id": ana.id,
            "contact": "Ana",
            "provider_id": "SM0001",
            "error_code": "30003",
        },
    ]
    if isinstance(store, NotificationRecovery):  # the send's own outcome stands
        [record] = await store.notifications_of(device.tenant_id, alert.id)
        assert (record.status, record.attempts, record.error) == ("sent", 1, None)


async def test_repeated_late_and_unknown_delivery_statuses_change_nothing(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    key = NotificationKey(alert.id, 7, "sms", 1)._asdict()  # a contact deleted since: its history stays
    assert await store.claim_notification(**key)
    await store.finish_notification(**key, status="sent", attempts=2, provider_id="SM0002")
    other = NotificationKey(alert.id, 8, "sms", 1)._asdict()
    assert await store.claim_notification(**other)
    await store.finish_notification(**other, status="failed", attempts=1, error="invalid number")

    for status in ("queued", "queued", "delivered", "sent", "delivered"):  # Twilio retries, and may be late
        assert await store.record_delivery_status(provider_id="SM0002", status=status, error_code=None) == alert.id
    assert [(d["status"], d["contact_id"], "contact" in d) for d in await delivery_lines(store, alert)] == [
        ("queued", 7, False),
        ("delivered", 7, False),
    ]
    assert await store.record_delivery_status(provider_id="SM-unknown", status="delivered", error_code=None) is None
    assert len(await delivery_lines(store, alert)) == 2


async def test_concurrent_delivery_statuses_are_each_recorded_once(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    key = NotificationKey(alert.id, 1, "sms", 1)._asdict()
    assert await store.claim_notification(**key)
    await store.finish_notification(**key, status="sent", attempts=1, provider_id="SM0003")
    await asyncio.gather(
        *(store.record_delivery_status(provider_id="SM0003", status="delivered", error_code=None) for _ in range(10))
    )
    assert [d["status"] for d in await delivery_lines(store, alert)] == ["delivered"]

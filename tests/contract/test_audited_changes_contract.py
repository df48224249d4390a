"""The changes that carry an audit entry (CONTRACT §5) beyond contacts, for every adapter in STORE_FACTORIES:
an alert acknowledged or resolved, the escalation policy replaced, a geofence added or removed, a
device's settings replaced. One entry per change, none for a call that changes nothing.

Only port methods are used, except in the last tests, which stop a MongoDB alert change half way
and check the next open settles its entry.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.store import Store
from shared.store.alerts import AlertTransitionRefused
from shared.store.audit import Actor, AuditEntry
from shared.store.device_settings import DeviceSettings
from shared.store.escalation import EscalationStep
from shared.store.mongo import MongoStore
from tests.contract.store_data import add_device, raised_alert

ALICE = Actor("user", "1", "alice@example.com")
BOB = Actor("contact", "7", "Bob")


def entry(tenant_id: int, action: str, target_type: str, target_id: str | None, **detail: Any) -> AuditEntry:
    return AuditEntry(tenant_id, ALICE, action, target_type, target_id, detail)


async def logged(store: Store, tenant_id: int) -> list[tuple[str, str | None]]:
    """The tenant's log, oldest first, as (action, target id)."""
    return [(r.entry.action, r.entry.target_id) for r in reversed(await store.audit_log(tenant_id))]


async def test_acknowledge_and_resolve_write_one_entry_per_change(store: Store) -> None:
    device = await add_device(store)
    tenant = device.tenant_id
    alert = await raised_alert(store, device)
    target = str(alert.id)
    ack = AuditEntry(tenant, BOB, "alert.ack", "alert", target, {"via": "sms", "contact_id": 7})
    acknowledged = await store.acknowledge_alert(tenant, alert.id, by="Bob", audit=ack)
    assert acknowledged is not None and acknowledged.status == "acknowledged"
    # Acknowledging again changes nothing and records nothing.
    await store.acknowledge_alert(tenant, alert.id, by="Bob", audit=ack)
    resolve = entry(tenant, "alert.resolve", "alert", target, note="false alarm")
    resolved = await store.resolve_alert(tenant, alert.id, by="alice", note="false alarm", audit=resolve)
    assert resolved is not None and resolved.status == "resolved"
    await store.resolve_alert(tenant, alert.id, by="alice", audit=resolve)
    # A refused change records nothing either.
    with pytest.raises(AlertTransitionRefused):
        await store.acknowledge_alert(tenant, alert.id, by="Bob", audit=ack)
    # Nor does one on another tenant's alert.
    other = await store.ensure_tenant("globex")
    assert (
        await store.acknowledge_alert(other, alert.id, by="x", audit=entry(other, "alert.ack", "alert", target)) is None
    )

    log = await store.audit_log(tenant)
    assert [(r.entry.action, r.entry.target_id) for r in reversed(log)] == [
        ("alert.ack", target),
        ("alert.resolve", target),
    ]
    assert log[1].entry.actor == BOB and log[1].entry.detail == {"via": "sms", "contact_id": 7}
    assert await store.audit_log(other) == []


async def test_geofence_create_and_delete_write_their_entries(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    circle = {"type": "Circle", "center": [7.0553, 43.6163], "radius_m": 250.0}
    geofence = await store.add_geofence(
        tenant_id=tenant,
        name="depot",
        shape=circle,
        devices=(),
        alert_on=("exit",),
        audit=entry(tenant, "geofence.create", "geofence", None, name="depot"),
    )
    gone = entry(tenant, "geofence.delete", "geofence", str(geofence.id))
    assert await store.delete_geofence(tenant, geofence.id, audit=gone)
    assert not await store.delete_geofence(tenant, geofence.id, audit=gone)
    assert await logged(store, tenant) == [
        ("geofence.create", str(geofence.id)),  # the store names the new id
        ("geofence.delete", str(geofence.id)),
    ]
    assert await store.geofences(tenant) == []


async def test_escalation_and_settings_updates_write_their_entries(store: Store) -> None:
    device = await add_device(store)
    tenant = device.tenant_id
    steps = [EscalationStep((3,), 120.0)]
    await store.set_escalation_policy(tenant, steps, audit=entry(tenant, "escalation.update", "escalation", None))
    await store.set_escalation_policy(tenant, steps, audit=entry(tenant, "escalation.update", "escalation", None))
    await store.set_escalation_policy(tenant, [], audit=entry(tenant, "escalation.update", "escalation", None))
    assert await store.escalation_policy(tenant) is None
    settings = DeviceSettings(offline_after=300.0)
    await store.set_device_settings(
        device.id, settings, audit=entry(tenant, "settings.update", "device", device.imei, offline_after=300.0)
    )
    assert await store.device_settings(device.id) == settings
    assert await logged(store, tenant) == [
        ("escalation.update", None),
        ("escalation.update", None),
        ("escalation.update", None),
        ("settings.update", device.imei),
    ]


# -- MongoDB: an alert change stopped before its entry is copied is settled at open ------


class Stopped(Exception):
    """The process 'stops' here."""


async def test_mongo_an_acknowledgement_stopped_before_its_entry_is_copied_gets_it_at_open(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo = getattr(store, "_store", store)
    if not isinstance(mongo, MongoStore):
        pytest.skip("a MongoDB adapter's recovery: SQLite writes the change and its entry in one transaction")
    device = await add_device(store)
    tenant = device.tenant_id
    alert = await raised_alert(store, device)

    async def stop(*args: Any) -> None:
        raise Stopped

    monkeypatch.setattr(mongo, "_settle_audit", stop)
    with pytest.raises(Stopped):
        await store.acknowledge_alert(
            tenant, alert.id, by="Bob", audit=AuditEntry(tenant, BOB, "alert.ack", "alert", str(alert.id))
        )
    monkeypatch.undo()
    stored = await store.alert(tenant, alert.id)
    assert stored is not None and stored.status == "acknowledged"
    assert await store.audit_log(tenant) == []

    await mongo.open()
    assert await logged(store, tenant) == [("alert.ack", str(alert.id))]
    await mongo.open()
    assert len(await store.audit_log(tenant)) == 1


async def test_mongo_a_settings_entry_left_pending_survives_the_next_update(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replacing the document would drop the entry the stopped write left in it: updates keep it.
    mongo = getattr(store, "_store", store)
    if not isinstance(mongo, MongoStore):
        pytest.skip("a MongoDB adapter's recovery: SQLite writes the change and its entry in one transaction")
    device = await add_device(store)
    tenant = device.tenant_id

    async def stop(*args: Any) -> None:
        raise Stopped

    monkeypatch.setattr(mongo, "_settle_audit", stop)
    with pytest.raises(Stopped):
        await store.set_device_settings(
            device.id, DeviceSettings(offline_after=300.0), audit=entry(tenant, "settings.update", "device", "first")
        )
    monkeypatch.undo()
    await store.set_device_settings(
        device.id, DeviceSettings(offline_after=600.0), audit=entry(tenant, "settings.update", "device", "second")
    )
    await mongo.open()
    assert await logged(store, tenant) == [("settings.update", "first"), ("settings.update", "second")]
    assert await store.device_settings(device.id) == DeviceSettings(offline_after=600.0)

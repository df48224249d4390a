"""Tenants see only their own: across the ports, for every adapter in STORE_FACTORIES.

Only port methods are used, never an adapter's tables. Each test gets a fresh, empty store.
"""

from __future__ import annotations

from shared.alerts.ledger import NotificationRecovery
from shared.store import Store
from tests.contract.store_data import IMEI, OTHER_IMEI, add_device, raised_alert


async def test_a_tenant_reads_nothing_of_another(store: Store) -> None:
    ours = await add_device(store, tenant="acme")
    theirs = await add_device(store, OTHER_IMEI, tenant="globex", name="Gus")
    our_alert = await raised_alert(store, ours)
    their_alert = await raised_alert(store, theirs)
    our_contact = await store.add_contact(
        tenant_id=ours.tenant_id, name="Ana", email="ana@acme.example", phone=None, kinds=()
    )
    await store.add_contact(tenant_id=theirs.tenant_id, name="Gus", email="gus@globex.example", phone=None, kinds=())
    await store.create_api_key(tenant_id=theirs.tenant_id, name="k", prefix="sw_1", key_hash=b"g" * 32, role="admin")
    await store.claim_notification(alert_id=their_alert.id, contact_id=1, channel="email", step=1)
    us = ours.tenant_id

    assert [d.imei for d in await store.devices(us)] == [IMEI]
    assert [a.id for a in await store.alerts(us)] == [our_alert.id]
    assert await store.alerts(us, imei=OTHER_IMEI) == []
    assert await store.alert(us, their_alert.id) is None
    assert await store.alert_timeline(us, their_alert.id) == []
    assert await store.acknowledge_alert(us, their_alert.id, by="ana") is None
    assert await store.resolve_alert(us, their_alert.id, by="ana") is None
    assert (await store.alert(theirs.tenant_id, their_alert.id)).status == "open"  # type: ignore[union-attr]
    assert [c.name for c in await store.contacts(us)] == ["Ana"]
    assert await store.delete_contact(theirs.tenant_id, our_contact.id) is False
    assert [c.name for c in await store.contacts(us)] == ["Ana"]
    assert await store.api_keys(us) == []
    if isinstance(store, NotificationRecovery):
        assert await store.notifications_of(us, their_alert.id) == []

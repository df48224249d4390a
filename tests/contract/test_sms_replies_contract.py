"""SMS reply codes and answered inbound messages (shared/store/sms_replies.py), for every store adapter;
the acknowledgement's `via` detail on the timeline too."""

from __future__ import annotations

import asyncio

from shared.store import Store
from tests.contract.store_data import add_device, raised_alert

ANA, EVE = "+33612345678", "+15557770000"


async def test_a_code_is_kept_for_its_phone_and_alert_and_unique_among_that_phones_open_alerts(store: Store) -> None:
    device = await add_device(store)
    first, second = await raised_alert(store, device, 1), await raised_alert(store, device, 2)
    tenant = device.tenant_id

    code = await store.issue_reply_code(tenant_id=tenant, alert_id=first.id, contact_id=7, phone=ANA)
    assert len(code) == 4 and code.isdigit()
    assert await store.issue_reply_code(tenant_id=tenant, alert_id=first.id, contact_id=7, phone=ANA) == code  # resent
    other = await store.issue_reply_code(tenant_id=tenant, alert_id=second.id, contact_id=7, phone=ANA)
    assert other != code

    held = await store.reply_codes(ANA)
    assert [(r.alert_id, r.code, r.contact_id, r.tenant_id) for r in held] == [
        (first.id, code, 7, tenant),
        (second.id, other, 7, tenant),
    ]
    assert await store.reply_codes(EVE) == []  # looked up by phone: nothing for another phone


async def test_a_resolved_alert_drops_out_and_gives_its_code_back(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    await store.issue_reply_code(tenant_id=device.tenant_id, alert_id=alert.id, contact_id=7, phone=ANA)
    await store.acknowledge_alert(device.tenant_id, alert.id, by="Ana", detail={"via": "sms", "contact_id": 7})
    assert [r.alert_id for r in await store.reply_codes(ANA)] == [alert.id]  # acknowledged: still unresolved
    await store.resolve_alert(device.tenant_id, alert.id, by="Ana")
    assert await store.reply_codes(ANA) == []
    later = await raised_alert(store, device, 2)
    assert await store.issue_reply_code(tenant_id=device.tenant_id, alert_id=later.id, contact_id=7, phone=ANA)


async def test_concurrent_issues_give_each_alert_one_code_and_no_code_twice(store: Store) -> None:
    device = await add_device(store)
    alerts = [await raised_alert(store, device, seq) for seq in range(1, 6)]
    codes = await asyncio.gather(
        *(
            store.issue_reply_code(tenant_id=device.tenant_id, alert_id=a.id, contact_id=1, phone=ANA)
            for a in alerts + alerts
        )
    )
    assert codes[:5] == codes[5:] and len(set(codes[:5])) == 5


async def test_an_inbound_message_keeps_its_first_answer(store: Store) -> None:
    assert await store.inbound_sms_answer("SM1") is None
    await store.remember_inbound_sms("SM1", "acknowledged")
    await store.remember_inbound_sms("SM1", "something else")
    assert await store.inbound_sms_answer("SM1") == "acknowledged"
    assert await store.inbound_sms_answer("SM2") is None


async def test_the_acknowledged_line_says_how_and_by_whom(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    await store.acknowledge_alert(device.tenant_id, alert.id, by="Ana", detail={"via": "sms", "contact_id": 7})
    await store.acknowledge_alert(device.tenant_id, alert.id, by="Bob", detail={"via": "api"})  # too late: no change
    [line] = [e for e in await store.alert_timeline(device.tenant_id, alert.id) if e.action == "acknowledged"]
    assert (line.actor, line.detail) == ("Ana", {"via": "sms", "contact_id": 7})

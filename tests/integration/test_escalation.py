"""Escalation: step 1 at once, the next steps while nobody acknowledges, never twice, stopped by an ack.

Driven in this event loop over SQLite, the in-process bus and a real SMTP
server (aiosmtpd). The escalation loop's own clock is taken out of play (a
long check interval): tests call `escalate_due(now)` at chosen times.
"""

from __future__ import annotations

import time

from services.notifications.actions import acknowledge_alert, resolve_alert
from services.notifications.escalation import Escalator
from shared.store.escalation import EscalationStep
from tests.helpers.alerting import eventually
from tests.helpers.fake_twilio import FakeTwilio

HOUR = 3600.0


async def _alerting_with_policy(smtp, start_alerting, steps):  # type: ignore[no-untyped-def]
    app = await start_alerting(smtp, escalation_check_interval=HOUR)
    device = await app.device()
    ana = await app.contact(device, "Ana", "ana@acme.test", kinds=("sos",))
    bob = await app.contact(device, "Bob", "bob@acme.test")
    cy = await app.contact(device, "Cy", "cy@acme.test", kinds=("fall",))  # never told of an SOS
    ids = {"ana": ana.id, "bob": bob.id, "cy": cy.id}
    await app.store.set_escalation_policy(
        device.tenant_id, [EscalationStep(tuple(ids[name] for name in names), wait) for names, wait in steps]
    )
    return app, device, ids


async def test_nobody_acknowledges_so_the_next_step_is_told_after_its_wait(smtp, start_alerting):
    app, device, ids = await _alerting_with_policy(smtp, start_alerting, [(["ana"], 120), (["bob", "cy"], 300)])
    await app.alarm(device)
    await eventually(lambda: len(smtp.messages) == 1)
    await app.settle()
    assert [m["To"] for m in smtp.messages] == ["Ana <ana@acme.test>"]
    [alert] = await app.alerts()

    escalator = app.service.escalator
    assert await escalator.escalate_due(time.time() + 60) == 0  # still within step 1's wait
    assert await escalator.escalate_due(time.time() + 121) == 1
    await eventually(lambda: len(smtp.messages) == 2)
    await app.settle()
    assert smtp.messages[1]["To"] == "Bob <bob@acme.test>"  # Cy wants falls only
    assert await escalator.escalate_due(time.time() + 10 * HOUR) == 0  # step 2 was the last
    timeline = await app.actions(alert)
    assert ("escalated", {"step": 2, "contact_ids": [ids["bob"], ids["cy"]], "channels": ["sms", "email"]}) in timeline
    notified = [(d["contact"], d["channel"]) for action, d in timeline if action == "notified"]
    assert notified == [("Ana", "email"), ("Bob", "email")]


async def test_an_acknowledgement_stops_the_escalation(smtp, start_alerting):
    app, device, _ = await _alerting_with_policy(smtp, start_alerting, [(["ana"], 120), (["bob"], 300)])
    await app.alarm(device)
    await eventually(lambda: len(smtp.messages) == 1)
    [alert] = await app.alerts()

    await acknowledge_alert(app.context, tenant_id=alert.tenant_id, alert_id=alert.id, by="ana@acme.test")
    assert await app.service.escalator.escalate_due(time.time() + 10 * HOUR) == 0
    await app.settle()
    assert [m["To"] for m in smtp.messages] == ["Ana <ana@acme.test>"]
    assert "escalated" not in [action for action, _ in await app.actions(alert)]


async def test_an_alert_acknowledged_behind_the_plans_back_is_not_escalated(smtp, start_alerting):
    # Acknowledged straight in the store (no cancel): the escalator still checks the status first.
    app, device, _ = await _alerting_with_policy(smtp, start_alerting, [(["ana"], 120), (["bob"], 300)])
    await app.alarm(device)
    await eventually(lambda: len(smtp.messages) == 1)
    [alert] = await app.alerts()
    await app.store.resolve_alert(alert.tenant_id, alert.id, by="ops", note="false alarm")
    assert await app.service.escalator.escalate_due(time.time() + 10 * HOUR) == 0
    assert await app.store.due_escalations(time.time() + 10 * HOUR) == []
    await app.settle()
    assert len(smtp.messages) == 1


async def test_two_notifications_processes_take_each_step_once(smtp, start_alerting):
    app, device, _ = await _alerting_with_policy(smtp, start_alerting, [(["ana"], 120), (["bob"], 300)])
    await app.alarm(device)
    await eventually(lambda: len(smtp.messages) == 1)
    rival = Escalator(app.store, app.service.dispatcher)
    later = time.time() + 121
    taken = [await app.service.escalator.escalate_due(later), await rival.escalate_due(later)]
    assert sorted(taken) == [0, 1]
    await eventually(lambda: len(smtp.messages) == 2)
    await app.settle()
    assert [m["To"] for m in smtp.messages].count("Bob <bob@acme.test>") == 1


async def test_a_redelivered_alert_does_not_reset_the_plan(smtp, start_alerting):
    app, device, _ = await _alerting_with_policy(smtp, start_alerting, [(["ana"], 120), (["bob"], 300)])
    await app.alarm(device, seq=5)
    await eventually(lambda: len(smtp.messages) == 1)
    [planned] = await app.store.due_escalations(time.time() + 121)
    await app.alarm(device, seq=5)  # retransmitted ALARM
    await app.settle()
    assert await app.store.due_escalations(time.time() + 121) == [planned]
    assert len(smtp.messages) == 1


async def test_resolving_ends_the_plan(smtp, start_alerting):
    app, device, _ = await _alerting_with_policy(smtp, start_alerting, [(["ana"], 120), (["bob"], 300)])
    await app.alarm(device)
    await eventually(lambda: len(smtp.messages) == 1)
    [alert] = await app.alerts()
    await resolve_alert(app.context, tenant_id=alert.tenant_id, alert_id=alert.id, by="ops")
    assert await app.store.due_escalations(time.time() + 10 * HOUR) == []


async def test_sos_texts_and_emails_step_one_then_step_two_while_nobody_acknowledges(smtp, start_alerting):
    # The scenario on both channels: the real twilio client against the local fake, aiosmtpd for email.
    async with FakeTwilio(account_sid="AC" + "5678abcd" * 4, auth_token="escalation-test-token") as twilio:
        app = await start_alerting(
            smtp,
            escalation_check_interval=HOUR,
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            sms_from="+15550000000",
            twilio_base_url=twilio.url,
        )
        device = await app.device()
        lead = await app.store.add_contact(
            tenant_id=device.tenant_id, name="Lead", email="lead@acme.test", phone="+33612345678", kinds=()
        )
        manager = await app.store.add_contact(
            tenant_id=device.tenant_id, name="Manager", email=None, phone="+33698765432", kinds=()
        )
        await app.store.set_escalation_policy(
            device.tenant_id, [EscalationStep((lead.id,), 60), EscalationStep((manager.id,), 60)]
        )
        await app.alarm(device)
        await eventually(lambda: len(smtp.messages) == 1 and len(twilio.accepted) == 1)
        await app.settle()
        assert [r.to for r in twilio.accepted] == ["+33612345678"]

        assert await app.service.escalator.escalate_due(time.time() + 61) == 1
        await eventually(lambda: len(twilio.accepted) == 2)
        await app.settle()
        assert [r.to for r in twilio.accepted] == ["+33612345678", "+33698765432"]
        assert len(smtp.messages) == 1  # the manager has no email
        [alert] = await app.alerts()
        steps = [(d["contact"], d["channel"]) for action, d in await app.actions(alert) if action == "notified"]
        assert sorted(steps) == [("Lead", "email"), ("Lead", "sms"), ("Manager", "sms")]

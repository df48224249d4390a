"""Voice call escalation (CONTRACT §6): a step naming `voice` phones its contacts through the real
twilio client and the local fake's Calls API; the test plays Twilio's side of the call with
signed requests: it fetches the TwiML, presses keys, and reports how the call went."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api import create_app
from shared.protocols.xsole import CommandCode
from shared.runtime import Runtime
from shared.store.escalation import EscalationStep
from tests.helpers.alerting import Alerting, eventually
from tests.helpers.api import ApiHarness, api_harness
from tests.helpers.fake_twilio import CallRequest, FakeTwilio

HOUR = 3600.0
PUBLIC_URL = "https://solewatch.example"
SMS_FROM, VOICE_FROM = "+15005550006", "+15005550009"
LEAD, MANAGER = "+33612345678", "+447700900123"
WORKER = "Alice Martin"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(account_sid="AC" + "9876fedc" * 4, auth_token="voice-token-for-tests") as fake:
        yield fake


def twilio_settings(twilio: FakeTwilio) -> dict[str, Any]:
    return {
        "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token,
        "sms_from": SMS_FROM,
        "voice_from": VOICE_FROM,
        "twilio_base_url": twilio.url,
        "public_url": PUBLIC_URL,
    }


@pytest.fixture
async def calling(
    twilio: FakeTwilio, start_alerting: Callable[..., Awaitable[Alerting]]
) -> Callable[..., Awaitable[Any]]:
    """Alerting with SMS and calls on the fake, the escalation loop's clock out of play, a policy of `steps`
    ((contact name, wait, channels) each) over two contacts, Lead and Manager, and a device named WORKER."""

    async def start(steps: list[tuple[str, float, tuple[str, ...]]]) -> tuple[Alerting, Any, dict[str, Any]]:
        app = await start_alerting(None, escalation_check_interval=HOUR, **twilio_settings(twilio))
        device = await app.device(name=WORKER)
        contacts = {
            "Lead": await app.contact(device, "Lead", None, phone=LEAD),
            "Manager": await app.contact(device, "Manager", None, phone=MANAGER),
        }
        await app.store.set_escalation_policy(
            device.tenant_id, [EscalationStep((contacts[name].id,), wait, channels) for name, wait, channels in steps]
        )
        return app, device, contacts

    return start


def webhook_client(app: Alerting) -> httpx.AsyncClient:
    """The API over the alerting harness's store, reached as Twilio would reach the public URL."""
    asgi = create_app(app.context, Runtime([], lambda: app.settings), live_updates=False, auth=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi.other_asgi_app))


async def one_call(twilio: FakeTwilio) -> CallRequest:
    await eventually(lambda: len(twilio.accepted_calls) == 1)
    [call] = twilio.accepted_calls
    return call


async def test_a_voice_step_calls_says_the_alert_and_one_key_acknowledges_it_as_the_contact(twilio, calling):
    app, device, contacts = await calling([("Lead", 60, ("sms",)), ("Manager", 300, ("voice",))])
    await app.alarm(device)
    await eventually(lambda: len(twilio.accepted) == 1)
    await app.settle()
    assert twilio.calls == []  # step 1 texts only

    assert await app.service.escalator.escalate_due(time.time() + 61) == 1
    call = await one_call(twilio)
    await app.settle()
    assert (call.to, call.from_) == (MANAGER, VOICE_FROM)
    assert call.url is not None and call.url.startswith(f"{PUBLIC_URL}/api/v1/webhooks/twilio/voice?")
    assert call.status_callback == f"{PUBLIC_URL}/api/v1/webhooks/twilio/voice/status"
    assert call.status_callback_events == ["answered", "completed"]
    assert len(twilio.accepted) == 1  # the voice step texts nobody

    async with webhook_client(app) as api:
        answered = await twilio.answer(call, client=api)
        assert answered.status_code == 200 and answered.headers["content-type"].startswith("text/xml")
        twiml = answered.text
        assert "<Gather" in twiml and 'numDigits="1"' in twiml
        assert f"SOS alarm from {WORKER}" in twiml and "Press 1 to acknowledge" in twiml
        assert "yesterday at midnight, UTC" in twiml  # the alarm's time (tests date alarms yesterday 00:00), in words
        assert "latitude 43.616 north, longitude 7.055 east" in twiml  # not 436163000, not -/+
        assert not re.search(r"\d{4}-\d\d-\d\dT", twiml)  # no raw ISO timestamp

        pressed = await twilio.press(call, twiml, "1", client=api)
        assert pressed.status_code == 200 and "The alert is acknowledged" in pressed.text
        again = await twilio.press(call, twiml, "1", client=api)  # a second key press, or a retried request
        assert "already acknowledged by Manager" in again.text

    [alert] = await app.alerts()
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", "Manager")
    acknowledged = [
        (e.actor, e.detail)
        for e in await app.store.alert_timeline(alert.tenant_id, alert.id)
        if e.action == "acknowledged"
    ]
    assert acknowledged == [("Manager", {"via": "voice", "contact_id": contacts["Manager"].id})]
    [entry] = [r.entry for r in await app.store.audit_log(alert.tenant_id) if r.entry.action == "alert.ack"]
    assert (entry.actor.type, entry.actor.id, entry.actor.label) == ("contact", str(contacts["Manager"].id), "Manager")
    assert entry.detail == {"via": "voice", "contact_id": contacts["Manager"].id}
    await eventually(lambda: app.commands.sent)
    assert app.commands.sent == [(device.id, int(CommandCode.ALARM_ACKNOWLEDGED), b"")]  # COMMAND 4, once
    assert await app.store.due_escalations(time.time() + 10 * HOUR) == []  # escalation stopped


async def test_an_unanswered_call_is_a_failed_delivery_and_the_next_step_fires_on_time(twilio, calling):
    app, device, contacts = await calling([("Manager", 120, ("voice",)), ("Lead", 300, ("sms",))])
    await app.alarm(device)
    call = await one_call(twilio)  # step 1 names voice: the call goes out as the alert is raised
    await app.settle()
    assert twilio.accepted == []

    async with webhook_client(app) as api:
        reported = await twilio.report_call(call, "no-answer", client=api)
        assert reported.status_code == 204
        assert (await twilio.report_call(call, "no-answer", client=api)).status_code == 204  # Twilio retried
    [alert] = await app.alerts()
    statuses = [d for action, d in await app.actions(alert) if action == "delivery_status"]
    assert statuses == [
        {
            "status": "no-answer",
            "channel": "voice",
            "contact_id": contacts["Manager"].id,
            "contact": "Manager",
            "provider_id": call.sid,
        }
    ]
    assert alert.status == "open"

    escalator = app.service.escalator
    assert await escalator.escalate_due(time.time() + 60) == 0  # not before step 1's wait
    assert await escalator.escalate_due(time.time() + 121) == 1
    await eventually(lambda: len(twilio.accepted) == 1)
    await app.settle()
    assert [r.to for r in twilio.accepted] == [LEAD]


async def test_a_completed_call_without_the_key_leaves_the_alert_open(twilio, calling):
    app, device, _ = await calling([("Manager", 120, ("voice",)), ("Lead", 300, ("sms",))])
    await app.alarm(device)
    call = await one_call(twilio)
    await app.settle()
    async with webhook_client(app) as api:
        twiml = (await twilio.answer(call, client=api)).text
        other_key = await twilio.press(call, twiml, "7", client=api)
        assert "That key does nothing" in other_key.text and "<Gather" in other_key.text  # read again
        for status in ("in-progress", "completed", "in-progress"):  # the last one late, after the end
            assert (await twilio.report_call(call, status, client=api)).status_code == 204
    [alert] = await app.alerts()
    assert alert.status == "open"
    assert [d["status"] for a, d in await app.actions(alert) if a == "delivery_status"] == ["in-progress", "completed"]
    assert await app.service.escalator.escalate_due(time.time() + 121) == 1  # escalation goes on


@pytest.mark.parametrize("forgery", ["unsigned", "wrong token", "altered url"])
async def test_requests_twilio_did_not_sign_are_refused_and_acknowledge_nothing(twilio, calling, forgery):
    app, device, contacts = await calling([("Manager", 120, ("voice",))])
    await app.alarm(device)
    call = await one_call(twilio)
    await app.settle()
    assert call.url
    async with webhook_client(app) as api:
        twiml = (await twilio.answer(call, client=api)).text
        action = re.search(r'action="([^"]+)"', twiml).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
        form = twilio.call_form(call, Digits="1")
        if forgery == "unsigned":
            headers = {}
        elif forgery == "wrong token":
            headers = {"X-Twilio-Signature": twilio.signature(action, form, auth_token="not-the-token")}
        else:  # a good signature for another contact's URL
            headers = {"X-Twilio-Signature": twilio.signature(action, form)}
            action = action.replace(f"contact={contacts['Manager'].id}", f"contact={contacts['Lead'].id}")
        refused = await api.post(action, data=form, headers=headers)
        assert refused.status_code == 403
        assert (await twilio.answer(call, client=api, signed=False)).status_code == 403
        assert (await twilio.report_call(call, "completed", client=api, signed=False)).status_code == 403
    [alert] = await app.alerts()
    assert alert.status == "open" and app.commands.sent == []


async def test_a_signed_request_for_a_contact_not_phoned_acknowledges_nothing(twilio, calling):
    # Lead was texted, not phoned: a URL naming them, even signed, is no call of theirs.
    app, device, contacts = await calling([("Lead", 60, ("sms",)), ("Manager", 300, ("voice",))])
    await app.alarm(device)
    await eventually(lambda: len(twilio.accepted) == 1)
    await app.settle()
    [alert] = await app.alerts()
    url = (
        f"{PUBLIC_URL}/api/v1/webhooks/twilio/voice/gather?tenant={alert.tenant_id}&alert={alert.id}"
        f"&contact={contacts['Lead'].id}"
    )
    form = {"AccountSid": twilio.account_sid, "CallSid": "CA" + "0" * 32, "Digits": "1"}
    async with webhook_client(app) as api:
        answer = await api.post(url, data=form, headers={"X-Twilio-Signature": twilio.signature(url, form)})
    assert answer.status_code == 200 and "no longer available" in answer.text
    assert (await app.alerts())[0].status == "open"


async def test_without_a_policy_nobody_is_phoned(twilio, start_alerting):
    # The first notification of an alert keeps its old channels: SMS and email, never a call.
    app = await start_alerting(None, **twilio_settings(twilio))
    device = await app.device(name=WORKER)
    await app.contact(device, "Lead", None, phone=LEAD)
    await app.alarm(device)
    await eventually(lambda: len(twilio.accepted) == 1)
    await app.settle()
    assert twilio.calls == []


async def test_a_step_tells_its_contacts_through_its_channels_only(twilio, smtp, start_alerting):
    app = await start_alerting(smtp, escalation_check_interval=HOUR, **twilio_settings(twilio))
    device = await app.device(name=WORKER)
    lead = await app.store.add_contact(
        tenant_id=device.tenant_id, name="Lead", email="lead@acme.test", phone=LEAD, kinds=()
    )
    await app.store.set_escalation_policy(device.tenant_id, [EscalationStep((lead.id,), 60, ("email", "voice"))])
    await app.alarm(device)
    await eventually(lambda: len(smtp.messages) == 1 and len(twilio.accepted_calls) == 1)
    await app.settle()
    assert twilio.accepted == []  # no SMS: the step did not name it
    [alert] = await app.alerts()
    notified = sorted(d["channel"] for a, d in await app.actions(alert) if a == "notified")
    assert notified == ["email", "voice"]


async def test_calls_work_with_a_voice_caller_id_and_no_sms_sender(twilio, start_alerting):
    app = await start_alerting(None, escalation_check_interval=HOUR, **(twilio_settings(twilio) | {"sms_from": None}))
    device = await app.device(name=WORKER)
    manager = await app.contact(device, "Manager", None, phone=MANAGER)
    await app.store.set_escalation_policy(device.tenant_id, [EscalationStep((manager.id,), 60, ("voice",))])
    await app.alarm(device)
    call = await one_call(twilio)
    await app.settle()
    assert call.from_ == VOICE_FROM
    async with webhook_client(app) as api:
        answered = await twilio.answer(call, client=api)
    assert answered.status_code == 200 and WORKER in answered.text


# -- the policy API --------------------------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path, twilio: FakeTwilio) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path) as harness:
        harness.context.settings = harness.settings.model_copy(update=twilio_settings(twilio))
        yield harness


async def test_the_policy_api_keeps_each_steps_channels(api: ApiHarness) -> None:
    admin = await api.caller(await api.tenant())
    made = await api.http.post("/api/v1/contacts", headers=admin.headers, json={"name": "Lead", "phone": LEAD})
    lead = made.json()["id"]
    body = {
        "steps": [
            {"contacts": [lead], "wait_s": 60},
            {"contacts": [lead], "wait_s": 120, "channels": ["voice", "sms", "voice"]},
        ]
    }
    saved = await api.http.put("/api/v1/escalation-policy", headers=admin.headers, json=body)
    assert saved.status_code == 200, saved.text
    expected = [
        {"contacts": [lead], "wait_s": 60.0, "channels": ["sms", "email"]},
        {"contacts": [lead], "wait_s": 120.0, "channels": ["voice", "sms"]},
    ]
    assert saved.json()["steps"] == expected
    assert (await api.http.get("/api/v1/escalation-policy", headers=admin.headers)).json()["steps"] == expected


@pytest.mark.parametrize(
    ("channels", "error_type"), [([], "too_short"), (["fax"], "literal_error"), ("voice", "list_type")]
)
async def test_channels_outside_sms_email_voice_are_refused(api: ApiHarness, channels: Any, error_type: str) -> None:
    admin = await api.caller(await api.tenant())
    lead = (await api.http.post("/api/v1/contacts", headers=admin.headers, json={"name": "Lead", "phone": LEAD})).json()
    refused = await api.http.put(
        "/api/v1/escalation-policy",
        headers=admin.headers,
        json={"steps": [{"contacts": [lead["id"]], "wait_s": 60, "channels": channels}]},
    )
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["loc"][:4] == ["body", "steps", 0, "channels"] and error["type"] == error_type
    assert (await api.http.get("/api/v1/escalation-policy", headers=admin.headers)).json()["steps"] == []


async def test_voice_is_refused_where_calls_cannot_be_placed(api: ApiHarness) -> None:
    api.context.settings = api.settings  # no Twilio account, no public URL
    admin = await api.caller(await api.tenant())
    lead = (await api.http.post("/api/v1/contacts", headers=admin.headers, json={"name": "Lead", "phone": LEAD})).json()
    refused = await api.http.put(
        "/api/v1/escalation-policy",
        headers=admin.headers,
        json={
            "steps": [
                {"contacts": [lead["id"]], "wait_s": 60},
                {"contacts": [lead["id"]], "wait_s": 60, "channels": ["sms", "voice"]},
            ]
        },
    )
    assert refused.status_code == 422
    assert refused.json()["detail"] == [
        {
            "loc": ["body", "steps", 1, "channels", 1],
            "type": "channel_not_configured",
            "msg": refused.json()["detail"][0]["msg"],
        }
    ]
    assert "SOLEWATCH_PUBLIC_URL" in refused.json()["detail"][0]["msg"]


@pytest.mark.parametrize("path", ["/api/v1/webhooks/twilio/voice", "/api/v1/webhooks/twilio/voice/gather"])
async def test_an_unsigned_request_is_refused_before_its_query_is_looked_at(twilio, calling, path):
    app, _, _ = await calling([("Manager", 120, ("voice",))])
    async with webhook_client(app) as api:
        for query in ("", "?tenant=x&alert=1&contact=1"):  # missing, then malformed
            refused = await api.post("http://10.0.0.5:8000" + path + query, data={"Digits": "1"})
            assert refused.status_code == 403, refused.text

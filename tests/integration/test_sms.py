"""Alerts by SMS, end to end: the real twilio client against a local fake of Twilio's
Messages API (tests/helpers/fake_twilio.py), the notifications service over SqliteStore
and MemoryBus (the harness of test_notifications.py), and the API's delivery status
webhook fed by the fake's signed callbacks."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from services.api import create_app
from services.notifications import sms
from services.notifications.notifier import AlertNotice, NotificationFailed
from services.notifications.sms import SmsNotifier
from shared.bus.topics import TOPIC_ALERT
from shared.config import Settings
from shared.runtime import Runtime
from shared.store.alerts import Alert, Contact
from shared.store.sqlite import SqliteStore
from tests.helpers.alerting import TS, Alerting, eventually, free_port
from tests.helpers.fake_twilio import FakeTwilio

ALARM_TIME = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(TS))  # as messages render it

SENDER = "+15005550006"
PUBLIC_URL = "https://solewatch.example"
CALLBACK_URL = f"{PUBLIC_URL}/api/v1/webhooks/twilio/status"
ANA, BOB = "+33612345678", "+447700900123"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(account_sid="AC" + "1234abcd" * 4, auth_token="twilio-token-for-tests") as fake:
        yield fake


def sms_settings(twilio: FakeTwilio, **overrides: Any) -> dict[str, Any]:
    values = {
        "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token,
        "sms_from": SENDER,
        "twilio_base_url": twilio.url,
        "public_url": PUBLIC_URL,
    }
    return values | overrides


@pytest.fixture
async def texting(
    twilio: FakeTwilio, start_alerting: Callable[..., Awaitable[Alerting]]
) -> Callable[..., Awaitable[Alerting]]:
    """start_alerting with SMS on the fake (and email when given an SMTP server)."""

    async def start(smtp_sink: Any = None, **overrides: Any) -> Alerting:
        return await start_alerting(smtp_sink, **sms_settings(twilio, **overrides))

    return start


INTERNAL_URL = "http://10.0.0.5:8000/api/v1/webhooks/twilio/status"  # where the proxy in front passes it on


def webhook_client(app: Alerting) -> httpx.AsyncClient:
    """The API over the alerting harness's store."""
    asgi = create_app(app.context, Runtime([], lambda: app.settings), live_updates=False, auth=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi.other_asgi_app))


async def notified(app: Alerting, alert: Alert) -> dict[str, tuple[str, dict[str, Any]]]:
    """The outcome line of each contact's notification, by contact name and channel."""
    return {f"{d['contact']}/{d['channel']}": (a, d) for a, d in await app.actions(alert) if a.startswith("notif")}


async def sent_sms_alert(app: Alerting, twilio: FakeTwilio) -> tuple[Alert, str]:
    """An SOS texted to Ana: the alert and the message's SID."""
    device = await app.device()
    await app.contact(device, "Ana", None, phone=ANA)
    await app.alarm(device)
    await app.settle()
    [alert] = await app.alerts()
    [message] = twilio.accepted
    return alert, str(message.sid)


# -- alerts become SMS ------------------------------------------------------------------------------


async def test_an_sos_texts_each_contact_with_a_phone(twilio, texting):
    app = await texting()
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test", phone=ANA)  # no SMTP configured: SMS only
    await app.contact(device, "Bob", None, phone=BOB, kinds=("sos",))
    await app.contact(device, "Cy", "cy@acme.test")  # no phone
    await app.contact(device, "Dee", None, phone="+33698765432", kinds=("fall",))  # not for an SOS
    await app.contact(device, "Eve", None, phone="06 12 34 56 78")  # not E.164: cannot be texted

    await app.alarm(device)
    await app.settle()

    assert sorted(r.to for r in twilio.requests) == sorted([ANA, BOB])
    [alert] = await app.alerts()
    for message in twilio.accepted:
        assert message.account_sid == twilio.account_sid
        assert message.credentials == (twilio.account_sid, twilio.auth_token)
        assert message.from_ == SENDER
        assert message.status_callback == CALLBACK_URL
        body = message.body or ""
        assert len(body) < 320
        assert "SOS" in body and "Simulated worker 3" in body and ALARM_TIME in body
        assert "https://www.openstreetmap.org/?mlat=43.6163&mlon=7.0553#map=17/43.6163/7.0553" in body
        assert f"#{alert.id}" in body
    outcomes = await notified(app, alert)
    assert sorted(outcomes) == ["Ana/sms", "Bob/sms"]
    assert all(action == "notified" and d["attempts"] == 1 for action, d in outcomes.values())
    records = await app.store.notifications_of(alert.tenant_id, alert.id)
    assert sorted((r.channel, r.status) for r in records) == [("sms", "sent"), ("sms", "sent")]


async def test_an_alarm_without_a_fix_says_so(twilio, texting):
    app = await texting()
    device = await app.device(name="A worker whose name is far too long for a text message, really " * 3)
    await app.contact(device, "Ana", None, phone=ANA)
    await app.alarm(device, kind=2, fix=False)
    await app.settle()
    [message] = twilio.accepted
    body = message.body or ""
    assert "FALL" in body and "Location unknown" in body and "openstreetmap" not in body
    assert len(body) < 320


async def test_a_twilio_server_error_is_retried_and_the_sms_sent_once(twilio, texting):
    app = await texting()
    twilio.fail_next(1, status=500, message="Internal Server Error")
    alert, _ = await sent_sms_alert(app, twilio)

    assert [r.answered for r in twilio.requests] == [500, 201]
    assert len(twilio.accepted) == 1
    action, detail = (await notified(app, alert))["Ana/sms"]
    assert action == "notified" and detail["attempts"] == 2
    [record] = await app.store.notifications_of(alert.tenant_id, alert.id)
    assert (record.status, record.attempts) == ("sent", 2)


async def test_a_twilio_that_does_not_answer_in_time_is_tried_again(twilio, texting, monkeypatch):
    monkeypatch.setattr(sms, "REQUEST_TIMEOUT", 0.5)
    app = await texting()
    twilio.stall_next(1, seconds=30)
    alert, _ = await sent_sms_alert(app, twilio)

    assert len(twilio.requests) == 2 and len(twilio.accepted) == 1
    action, detail = (await notified(app, alert))["Ana/sms"]
    assert action == "notified" and detail["attempts"] == 2


async def test_an_invalid_number_fails_at_once_and_the_email_still_goes_out(twilio, smtp, texting):
    app = await texting(smtp)
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test")
    await app.contact(device, "Bob", None, phone=BOB)
    twilio.fail_next(1, status=400, code=21211, message="The 'To' number +447700900123 is not a valid phone number.")

    await app.alarm(device)
    await eventually(lambda: smtp.messages)
    await app.settle()

    assert [m["To"] for m in smtp.messages] == ["Ana <ana@acme.test>"]
    assert len(twilio.requests) == 1  # permanent: not retried
    [alert] = await app.alerts()
    outcomes = await notified(app, alert)
    assert outcomes["Ana/email"][0] == "notified"
    action, detail = outcomes["Bob/sms"]
    assert action == "notification_failed" and detail["attempts"] == 1
    assert "21211" in detail["error"] and "not a valid phone number" in detail["error"]
    statuses = {r.channel: (r.status, r.attempts) for r in await app.store.notifications_of(alert.tenant_id, alert.id)}
    assert statuses == {"email": ("sent", 1), "sms": ("failed", 1)}


async def test_a_gateway_that_keeps_failing_is_retried_then_recorded_failed_while_email_goes_out(twilio, smtp, texting):
    app = await texting(smtp, notification_max_attempts=3)
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test", phone=BOB)
    twilio.fail_next(10, status=503, message="Service Unavailable")

    await app.alarm(device)
    await eventually(lambda: smtp.messages)
    await app.settle()

    assert [r.answered for r in twilio.requests] == [503, 503, 503]  # the attempt limit, then it stops
    [alert] = await app.alerts()
    outcomes = await notified(app, alert)
    assert outcomes["Ana/email"][0] == "notified"
    action, detail = outcomes["Ana/sms"]
    assert action == "notification_failed" and detail["attempts"] == 3 and "503" in detail["error"]
    statuses = {r.channel: (r.status, r.attempts) for r in await app.store.notifications_of(alert.tenant_id, alert.id)}
    assert statuses == {"email": ("sent", 1), "sms": ("failed", 3)}


async def test_a_redelivered_alert_message_sends_no_second_sms(twilio, texting):
    app = await texting()
    device = await app.device()
    await app.contact(device, "Ana", None, phone=ANA)
    seen: list[bytes] = []

    async def record(message) -> None:
        seen.append(message.payload)

    app.context.bus.subscribe("test-recorder", [TOPIC_ALERT], record)
    await app.alarm(device)
    await app.settle()
    await asyncio.gather(*(app.context.bus.publish(TOPIC_ALERT, seen[0], message_id="redelivered") for _ in range(2)))
    await app.settle()

    assert len(twilio.requests) == 1


# -- how each failure is judged (the notifier alone against the fake) --------------------------------


NOTICE = AlertNotice(
    alert={
        "id": 1,
        "imei": "356307042441013",
        "kind": "sos",
        "ts": "2026-01-01T00:00:00+00:00",
        "lat": 43.6163,
        "lon": 7.0553,
    },
    tenant_id=1,
    device_name="Ana's insoles",
)
CONTACT = Contact(1, 1, "Ana", None, ANA, (), 0.0)


@pytest.mark.parametrize(
    ("status", "code", "permanent"),
    [
        (500, None, False),
        (503, None, False),
        (429, 20429, False),
        (400, 21211, True),
        (400, 21614, True),
        (401, 20003, True),
        (404, 20404, True),
    ],
)
async def test_twilio_errors_are_permanent_only_when_retrying_cannot_help(twilio, status, code, permanent):
    notifier = SmsNotifier(Settings(**sms_settings(twilio)))
    twilio.fail_next(1, status=status, code=code)
    with pytest.raises(NotificationFailed) as failure:
        await notifier.send(contact=CONTACT, notice=NOTICE)
    assert failure.value.permanent is permanent
    assert str(status) in str(failure.value)


async def test_an_unreachable_twilio_is_a_transient_failure(twilio):
    notifier = SmsNotifier(Settings(**sms_settings(twilio, twilio_base_url=f"http://127.0.0.1:{free_port()}")))
    with pytest.raises(NotificationFailed) as failure:
        await notifier.send(contact=CONTACT, notice=NOTICE)
    assert failure.value.permanent is False


async def test_without_a_public_url_no_status_callback_is_asked_for(twilio):
    notifier = SmsNotifier(Settings(**sms_settings(twilio, public_url=None)))
    sid = await notifier.send(contact=CONTACT, notice=NOTICE)
    [message] = twilio.accepted
    assert sid == message.sid and message.status_callback is None


# -- delivery status callbacks -------------------------------------------------------------------------


async def test_a_signed_delivery_report_joins_the_alert_timeline(twilio, texting):
    app = await texting()
    alert, sid = await sent_sms_alert(app, twilio)
    async with webhook_client(app) as api:
        for status in ("sent", "delivered"):
            answer = await twilio.report(sid, status, client=api, deliver_to=INTERNAL_URL)
            assert answer.status_code == 204, answer.text
        again = await twilio.report(sid, "delivered", client=api, deliver_to=INTERNAL_URL)  # Twilio retrying
        late = await twilio.report(sid, "sent", client=api, deliver_to=INTERNAL_URL)  # a callback arriving late
        unknown = await twilio.send_status_callback(
            CALLBACK_URL, message_sid="SM" + "0" * 32, status="delivered", client=api, deliver_to=INTERNAL_URL
        )
    assert (again.status_code, late.status_code, unknown.status_code) == (204, 204, 204)

    reports = [d for a, d in await app.actions(alert) if a == "delivery_status"]
    assert [(d["status"], d["contact"], d["channel"], d["provider_id"]) for d in reports] == [
        ("sent", "Ana", "sms", sid),
        ("delivered", "Ana", "sms", sid),
    ]
    [record] = await app.store.notifications_of(alert.tenant_id, alert.id)
    assert record.status == "sent"


async def test_an_undelivered_report_keeps_its_error_code(twilio, texting):
    app = await texting()
    alert, sid = await sent_sms_alert(app, twilio)
    async with webhook_client(app) as api:
        answer = await twilio.report(sid, "undelivered", error_code="30003", client=api, deliver_to=INTERNAL_URL)
    assert answer.status_code == 204
    [report] = [d for a, d in await app.actions(alert) if a == "delivery_status"]
    assert (report["status"], report["error_code"]) == ("undelivered", "30003")


@pytest.mark.parametrize("forgery", ["missing", "other token", "other url", "altered"])
async def test_a_report_without_a_good_signature_is_refused_and_changes_nothing(twilio, texting, forgery):
    app = await texting()
    alert, sid = await sent_sms_alert(app, twilio)
    before = await app.actions(alert)
    form = twilio.status_callback_form(sid, "delivered")
    signatures = {
        "other token": twilio.signature(CALLBACK_URL, form, auth_token="not-the-token"),
        "other url": twilio.signature(INTERNAL_URL, form),  # not the URL Twilio was given
        "altered": twilio.signature(CALLBACK_URL, twilio.status_callback_form(sid, "failed")),
    }
    async with webhook_client(app) as api:
        answer = await twilio.send_status_callback(
            CALLBACK_URL,
            message_sid=sid,
            status="delivered",
            signed=forgery != "missing",
            signature=signatures.get(forgery),
            client=api,
            deliver_to=INTERNAL_URL,
        )
    assert answer.status_code == 403
    assert "detail" in answer.json()
    assert await app.actions(alert) == before


async def test_the_webhook_is_not_found_without_sms(start_alerting, twilio):
    app = await start_alerting(None)  # no Twilio account configured
    async with webhook_client(app) as api:
        answer = await twilio.send_status_callback(
            CALLBACK_URL, message_sid="SM1", status="delivered", client=api, deliver_to=INTERNAL_URL
        )
    assert answer.status_code == 404 and "detail" in answer.json()


async def test_a_store_made_before_delivery_statuses_opens_and_records_them(tmp_path):
    path = tmp_path / "old.db"
    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:  # as a database from before this feature was
        db.execute("DROP TABLE notification_deliveries")

    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    try:
        tenant_id = await store.ensure_tenant("acme")
        alert, _ = await store.raise_alert_from_alarm(
            {
                "alarm_id": 1,
                "tenant_id": tenant_id,
                "device_id": 1,
                "imei": "356307042441013",
                "kind": "sos",
                "ts": 1767225600,
                "lat": None,
                "lon": None,
                "battery": None,
            }
        )
        assert await store.claim_notification(alert_id=alert.id, contact_id=1, channel="sms", step=1)
        await store.finish_notification(
            alert_id=alert.id, contact_id=1, channel="sms", step=1, status="sent", attempts=1, provider_id="SM1"
        )
        assert await store.record_delivery_status(provider_id="SM1", status="delivered", error_code=None) == alert.id
    finally:
        await store.close()

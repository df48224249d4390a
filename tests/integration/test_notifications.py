"""Alarms to alerts to emails, end to end: SqliteStore, MemoryBus, OutboxRelay, the
notifications service and a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.notifications import acknowledge_alert, resolve_alert
from shared.alerts.ledger import CHANNEL_DEVICE, DEVICE_RECIPIENT
from shared.bus.topics import TOPIC_ALERT
from shared.protocols.xsole import CommandCode
from shared.store import Device
from shared.store.alerts import Alert, AlertTransitionRefused
from tests.helpers.alerting import FALL, TS, Alerting, SmtpSink, eventually, free_port, metric

# -- alarms become alerts become emails ------------------------------------------------------------


async def test_one_alarm_one_alert_one_email_per_matching_contact(smtp, start_alerting):
    app = await start_alerting(smtp)
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test", kinds=("sos",))
    await app.contact(device, "Bob", "bob@acme.test", kinds=("fall", "tamper"))  # not for SOS
    await app.contact(device, "Cy", "cy@acme.test")  # every kind
    await app.contact(device, "Dee", None, phone="+33612345678")  # no email: another channel's job
    sent = metric("notifications_sent_total", channel="email")

    await app.alarm(device, seq=9)
    await app.alarm(device, seq=9)  # the device retransmits it
    await eventually(lambda: len(smtp.messages) == 2)
    await app.settle()

    [alert] = await app.alerts()
    assert (alert.kind, alert.ts, alert.lat, alert.lon, alert.status) == ("sos", TS, 43.6163, 7.0553, "open")
    assert sorted(m["To"] for m in smtp.messages) == ["Ana <ana@acme.test>", "Cy <cy@acme.test>"]
    email = smtp.to("ana@acme.test")[0]
    assert email["Subject"] == "[solewatch] SOS — Simulated worker 3"
    text = email.get_body(("plain",)).get_content()
    assert (
        "SOS!" in text and time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(TS)) in text and "acme" in text
    )  # the tenant's name
    assert "https://www.openstreetmap.org/?mlat=43.6163&mlon=7.0553#map=17/43.6163/7.0553" in text
    assert email.get_body(("html",)) is not None
    notified = [d for action, d in await app.actions(alert) if action == "notified"]
    assert sorted((d["contact"], d["channel"], d["attempts"]) for d in notified) == [
        ("Ana", "email", 1),
        ("Cy", "email", 1),
    ]
    assert metric("notifications_sent_total", channel="email") - sent == 2


async def test_an_alarm_without_a_fix_says_location_unknown(smtp, start_alerting):
    app = await start_alerting(smtp)
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test")
    await app.alarm(device, kind=FALL, fix=False)
    await eventually(lambda: smtp.messages)
    email = smtp.messages[0]
    assert email["Subject"] == "[solewatch] FALL — Simulated worker 3"
    assert "location unknown" in email.get_body(("plain",)).get_content()


async def test_the_same_alert_message_delivered_twice_sends_one_email(smtp, start_alerting):
    app = await start_alerting(smtp)
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test")
    await app.contact(device, "Cy", "cy@acme.test")
    # Catch the `alert` message on its way, then deliver it again, twice at once.
    seen: list[bytes] = []

    async def record(message) -> None:
        seen.append(message.payload)

    app.context.bus.subscribe("test-recorder", [TOPIC_ALERT], record)
    await app.alarm(device)
    await eventually(lambda: len(smtp.messages) == 2)
    await asyncio.gather(*(app.context.bus.publish(TOPIC_ALERT, seen[0], message_id="redelivered") for _ in range(2)))
    await app.settle()
    await asyncio.sleep(0.1)

    assert orjson.loads(seen[0])["event"] == "created"
    assert sorted(m["To"] for m in smtp.messages) == ["Ana <ana@acme.test>", "Cy <cy@acme.test>"]


async def test_deferred_emails_are_retried_with_backoff_and_delivered(smtp, start_alerting):
    app = await start_alerting(smtp)
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test")
    smtp.defer["ana@acme.test"] = 2  # "451 try later", twice
    transient = metric("notification_attempts_total", channel="email", outcome="transient_error")

    await app.alarm(device)
    await eventually(lambda: smtp.messages)
    await app.settle()

    assert smtp.data_attempts["ana@acme.test"] == 3 and len(smtp.messages) == 1
    [alert] = await app.alerts()
    [(action, detail)] = [(a, d) for a, d in await app.actions(alert) if a.startswith("notif")]
    assert action == "notified" and detail["attempts"] == 3 and detail["contact"] == "Ana"
    assert metric("notification_attempts_total", channel="email", outcome="transient_error") - transient == 2
    [record] = await app.store.notifications_of(alert.tenant_id, alert.id)
    assert (record.status, record.attempts) == ("sent", 3)


async def test_a_refused_address_fails_for_good_and_the_others_still_get_theirs(smtp, start_alerting):
    app = await start_alerting(smtp)
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test")
    await app.contact(device, "Bob", "bob@acme.test")
    smtp.refuse.add("bob@acme.test")
    failed = metric("notifications_failed_total", channel="email")
    permanent = metric("notification_attempts_total", channel="email", outcome="permanent_error")

    await app.alarm(device)
    await eventually(lambda: smtp.messages)
    await app.settle()

    assert [m["To"] for m in smtp.messages] == ["Ana <ana@acme.test>"]
    [alert] = await app.alerts()
    outcomes = {d["contact"]: (a, d) for a, d in await app.actions(alert) if a.startswith("notif")}
    assert outcomes["Ana"][0] == "notified"
    action, detail = outcomes["Bob"]
    assert action == "notification_failed" and detail["attempts"] == 1 and "550" in detail["error"]
    assert metric("notifications_failed_total", channel="email") - failed == 1
    assert metric("notification_attempts_total", channel="email", outcome="permanent_error") - permanent == 1


async def test_an_smtp_outage_never_holds_up_the_bus(start_alerting):
    app = await start_alerting(
        None,
        smtp_host="127.0.0.1",
        smtp_port=free_port(),  # nobody listens there
        notification_max_attempts=3,
    )
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test")
    alert, _ = await app.store.raise_alert_from_alarm(
        {
            "alarm_id": 1,
            "tenant_id": device.tenant_id,
            "device_id": device.id,
            "imei": device.imei,
            "kind": "sos",
            "ts": TS,
            "lat": None,
            "lon": None,
            "battery": None,
        }
    )
    await app.settle()
    [(action, detail)] = [(a, d) for a, d in await app.actions(alert) if a.startswith("notif")]
    assert action == "notification_failed" and detail["attempts"] == 3 and "SMTP unavailable" in detail["error"]


async def test_the_bus_handler_returns_before_slow_recipients_are_served(smtp, start_alerting):
    app = await start_alerting(smtp, notification_drain_timeout=0.1)
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test")
    await app.contact(device, "Cy", "cy@acme.test")
    smtp.hang["ana@acme.test"] = 3.0
    await app.relay.drain()  # deliver by hand, to time the handler
    await app.alarm(device)
    await app.relay.relay_once()  # the alarm: the alert is stored with its message
    started = time.monotonic()
    await app.relay.relay_once()  # the alert: claims and background sends
    assert time.monotonic() - started < 0.5
    await eventually(lambda: smtp.to("cy@acme.test"))  # Cy is not kept waiting by Ana's stalled server
    assert not smtp.to("ana@acme.test")


# -- nothing lost when the process stops or dies mid-send ------------------------------------------


async def test_a_send_cut_short_by_a_stop_is_sent_at_the_next_start(smtp, start_alerting):
    app = await start_alerting(smtp, notification_drain_timeout=0.2)
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test")
    smtp.hang["ana@acme.test"] = 3.0
    await app.alarm(device)
    await eventually(lambda: smtp.data_attempts["ana@acme.test"])
    started = time.monotonic()
    await app.stop()
    assert time.monotonic() - started < 1.5  # drain waits a bounded time
    del smtp.hang["ana@acme.test"]

    again = await start_alerting(smtp)  # same data directory: a restart
    await eventually(lambda: smtp.to("ana@acme.test"))
    await again.settle()
    [alert] = await again.alerts()
    [record] = await again.store.notifications_of(alert.tenant_id, alert.id)
    assert record.status == "sent"
    assert [a for a, _ in await again.actions(alert) if a.startswith("notif")] == ["notified"]
    assert len(smtp.messages) == 1


async def test_a_claim_left_by_a_crashed_sender_is_sent_once_stale(smtp, start_alerting):
    app = await start_alerting(smtp, notification_claim_timeout=0.3)
    device = await app.device()
    alert, _ = await app.store.raise_alert_from_alarm(
        {
            "alarm_id": 1,
            "tenant_id": device.tenant_id,
            "device_id": device.id,
            "imei": device.imei,
            "kind": "sos",
            "ts": TS,
            "lat": 43.6163,
            "lon": 7.0553,
            "battery": 50,
        }
    )
    resolved, _ = await app.store.raise_alert_from_alarm(
        {
            "alarm_id": 2,
            "tenant_id": device.tenant_id,
            "device_id": device.id,
            "imei": device.imei,
            "kind": "fall",
            "ts": TS,
            "lat": None,
            "lon": None,
            "battery": None,
        }
    )
    await app.settle()  # no contacts yet: nobody told
    ana = await app.contact(device, "Ana", "ana@acme.test")
    # A process claimed both, then died before sending.
    for claimed in (alert, resolved):
        assert await app.store.claim_notification(alert_id=claimed.id, contact_id=ana.id, channel="email", step=1)
    await app.store.resolve_alert(device.tenant_id, resolved.id, by="bob")
    redriven = metric("notifications_redriven_total", channel="email")
    claimed_at = time.monotonic()

    await eventually(lambda: smtp.messages)
    assert time.monotonic() - claimed_at >= 0.25  # not before the claim went stale
    await app.settle()
    await asyncio.sleep(0.3)

    assert len(smtp.messages) == 1 and "SOS" in smtp.messages[0]["Subject"]
    assert [a for a, _ in await app.actions(alert) if a.startswith("notif")] == ["notified"]
    statuses = {r.alert_id: r.status for r in await app.store.notifications_of(device.tenant_id, alert.id)}
    statuses.update({r.alert_id: r.status for r in await app.store.notifications_of(device.tenant_id, resolved.id)})
    assert statuses == {alert.id: "sent", resolved.id: "cancelled"}
    assert metric("notifications_redriven_total", channel="email") - redriven == 2


# -- STARTTLS and authentication ------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a self-signed certificate for the STARTTLS test")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_smtp(certificate: tuple[Path, Path]) -> Any:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"alerts", b"s3cret")
        return AuthResult(success=ok)

    sink = SmtpSink()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    sink.port = controller.port  # type: ignore[attr-defined]
    try:
        yield sink
    finally:
        controller.stop()


async def test_starttls_with_authentication(tls_smtp, certificate, start_alerting):
    app = await start_alerting(
        tls_smtp, smtp_starttls=True, smtp_ca_file=certificate[0], smtp_user="alerts", smtp_password="s3cret"
    )
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test")
    await app.alarm(device)
    await eventually(lambda: tls_smtp.messages)
    assert tls_smtp.tls == [True]


async def test_an_untrusted_certificate_fails_for_good(tls_smtp, start_alerting):
    app = await start_alerting(tls_smtp, smtp_starttls=True, smtp_user="alerts", smtp_password="s3cret")
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test")
    await app.alarm(device)
    await app.settle()
    [alert] = await app.alerts()
    [(action, detail)] = [(a, d) for a, d in await app.actions(alert) if a.startswith("notif")]
    assert action == "notification_failed" and detail["attempts"] == 1, detail
    assert "certificate verify failed" in detail["error"]
    assert not tls_smtp.messages


# -- acknowledging tells the device, once ------------------------------------------------------------------


async def raised_alert(app: Alerting) -> tuple[Device, Alert]:
    device = await app.device()
    await app.alarm(device)
    await app.settle()
    [alert] = await app.alerts()
    return device, alert


async def test_acknowledging_sends_alarm_acknowledged_to_the_device_once(start_alerting):
    app = await start_alerting(None)
    device, alert = await raised_alert(app)
    tenant = device.tenant_id

    acked = await acknowledge_alert(app.context, tenant_id=tenant, alert_id=alert.id, by="ana@acme.test")
    again = await acknowledge_alert(app.context, tenant_id=tenant, alert_id=alert.id, by="bob@acme.test")
    await asyncio.gather(
        *(acknowledge_alert(app.context, tenant_id=tenant, alert_id=alert.id, by="cy@acme.test") for _ in range(5))
    )
    resolved = await resolve_alert(app.context, tenant_id=tenant, alert_id=alert.id, by="bob@acme.test", note="ok")

    assert acked is not None and acked.status == "acknowledged" and acked.acknowledged_by == "ana@acme.test"
    assert again == acked
    assert resolved is not None and resolved.status == "resolved" and resolved.resolution_note == "ok"
    assert app.commands.sent == [(device.id, CommandCode.ALARM_ACKNOWLEDGED, b"")]
    assert [a for a, _ in await app.actions(alert)] == ["raised", "acknowledged", "device_notified", "resolved"]


async def test_acknowledging_a_resolved_or_foreign_alert_sends_nothing(start_alerting):
    app = await start_alerting(None)
    device, alert = await raised_alert(app)
    assert await resolve_alert(app.context, tenant_id=device.tenant_id, alert_id=alert.id, by="ana") is not None
    with pytest.raises(AlertTransitionRefused):
        await acknowledge_alert(app.context, tenant_id=device.tenant_id, alert_id=alert.id, by="ana")
    other_tenant = await app.store.ensure_tenant("globex")
    assert await acknowledge_alert(app.context, tenant_id=other_tenant, alert_id=alert.id, by="gus") is None
    assert await resolve_alert(app.context, tenant_id=other_tenant, alert_id=alert.id, by="gus") is None
    assert app.commands.sent == []


async def test_a_command_that_could_not_be_queued_is_queued_later(start_alerting):
    app = await start_alerting(None)
    device, alert = await raised_alert(app)
    app.commands.failing = True
    acked = await acknowledge_alert(app.context, tenant_id=device.tenant_id, alert_id=alert.id, by="ana")
    assert acked is not None and acked.status == "acknowledged"  # the acknowledgement stands
    [record] = await app.store.notifications_of(device.tenant_id, alert.id)
    assert (record.contact_id, record.channel, record.status) == (DEVICE_RECIPIENT, CHANNEL_DEVICE, "interrupted")

    app.commands.failing = False
    assert await app.service.dispatcher.recover() == 1
    assert await app.service.dispatcher.recover() == 0
    await acknowledge_alert(app.context, tenant_id=device.tenant_id, alert_id=alert.id, by="ana")
    assert app.commands.sent == [(device.id, CommandCode.ALARM_ACKNOWLEDGED, b"")]


async def test_reload_rebuilds_the_channels(smtp, start_alerting):
    app = await start_alerting(None)
    assert app.service.dispatcher.channels == []
    await app.service.reload(app.settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port}))
    assert app.service.dispatcher.channels == ["email"]
    assert await app.service.check_ready() is None
    device = await app.device()
    await app.contact(device, "Ana", "ana@acme.test")
    await app.alarm(device)
    await eventually(lambda: smtp.messages)


async def test_an_alert_of_a_retired_insole_never_names_whoever_has_its_imei_now(smtp, start_alerting):
    # An alarm the listener took just before the insole was retired is notified after its IMEI
    # went to someone else: the email must not send supervisors to the wrong worker.
    app = await start_alerting(smtp)
    old = await app.device(name="Alice")
    await app.contact(old, "Ana", "ana@acme.test")
    assert await app.store.retire_device(old.id)
    await app.device(name="Carol")  # the same IMEI, registered again

    await app.alarm(old)
    await eventually(lambda: smtp.messages)
    subject = smtp.messages[0]["Subject"]
    assert "Carol" not in subject and old.imei in subject, subject

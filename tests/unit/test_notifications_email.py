"""What an alert email says, and how SMTP errors are classed (transient or permanent)."""

from __future__ import annotations

import ssl
from typing import Any

import aiosmtplib
import pytest

from services.notifications import email as email_module
from services.notifications.dispatcher import DispatchPolicy, wants
from services.notifications.email import EmailNotifier
from services.notifications.notifier import AlertNotice, NotificationFailed
from services.notifications.service import build_notifiers
from shared.config import Settings
from shared.store.alerts import Contact

ANA = Contact(id=1, tenant_id=1, name="Ana <Supervisor>", email="ana@acme.test", phone=None, kinds=(), created_at=0.0)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"smtp_host": "smtp.acme.test", "smtp_from": "alerts@acme.test"}
    values.update(overrides)
    return Settings(**values)


def notice(
    *,
    kind: str = "sos",
    lat: float | None = 43.6163,
    lon: float | None = 7.0553,
    device_name: str | None = "Simulated worker 3",
    tenant_name: str | None = "ACME",
) -> AlertNotice:
    alert = {
        "id": 42,
        "imei": "356307042441013",
        "kind": kind,
        "ts": "2026-01-01T00:00:00Z",
        "lat": lat,
        "lon": lon,
        "battery": 87,
        "status": "open",
        "created_at": "2026-01-01T00:00:01.250Z",
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": None,
        "resolved_by": None,
        "resolution_note": None,
    }
    return AlertNotice(alert=alert, tenant_id=1, device_name=device_name, tenant_name=tenant_name)


def parts(message) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return text, html


def test_an_sos_email_says_who_when_where_and_what_to_do():
    message = EmailNotifier(settings()).message(contact=ANA, notice=notice())
    assert message["Subject"] == "[solewatch] SOS — Simulated worker 3"
    assert message["To"] == '"Ana <Supervisor>" <ana@acme.test>'
    assert "alerts@acme.test" in message["From"]
    text, html = parts(message)
    link = "https://www.openstreetmap.org/?mlat=43.6163&mlon=7.0553#map=17/43.6163/7.0553"
    for body in (text, html):
        assert "SOS!" in body and "Simulated worker 3" in body and "2026-01-01 00:00:00 UTC" in body
        assert "acknowledge the alert in the solewatch dashboard" in body
        assert "Contact the worker now" in body
    assert link in text
    assert link.replace("&", "&amp;") in html
    assert "ACME" in text and "87%" in text


def test_without_a_fix_the_location_is_unknown():
    message = EmailNotifier(settings()).message(contact=ANA, notice=notice(lat=None, lon=None))
    text, html = parts(message)
    assert "location unknown" in text and "location unknown" in html
    assert "openstreetmap" not in text and "openstreetmap" not in html


def test_names_are_escaped_in_html_and_the_imei_stands_in_for_a_missing_name():
    message = EmailNotifier(settings()).message(
        contact=ANA, notice=notice(kind="no_motion", device_name=None, tenant_name="<b>ACME</b>")
    )
    assert message["Subject"] == "[solewatch] NO MOTION — device 356307042441013"
    _, html = parts(message)
    assert "<b>ACME</b>" not in html and "&lt;b&gt;ACME&lt;/b&gt;" in html


def test_advice_depends_on_the_kind():
    assert "charge" in notice(kind="low_battery").advice
    assert notice(kind="fall").advice == notice(kind="sos").advice


def test_email_reaches_contacts_with_an_address_only():
    notifier = EmailNotifier(settings())
    assert notifier.reaches(ANA)
    assert not notifier.reaches(Contact(2, 1, "Bob", None, "+33612345678", (), 0.0))


def test_email_is_configured_by_smtp_host_only():
    assert build_notifiers(Settings(smtp_host=None)) == []
    [notifier] = build_notifiers(settings())
    assert notifier.channel == "email"


@pytest.mark.parametrize(
    "error, permanent",
    [
        (aiosmtplib.SMTPDataError(451, "4.3.0 try later"), False),
        (aiosmtplib.SMTPDataError(554, "5.7.1 rejected as spam"), True),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), True),
        (
            aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no such user", "ana@acme.test")]),
            True,
        ),
        (
            aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(450, "mailbox busy", "ana@acme.test")]),
            False,
        ),
        (aiosmtplib.SMTPConnectError("connection refused"), False),
        (aiosmtplib.SMTPReadTimeoutError("timed out"), False),
        (aiosmtplib.SMTPServerDisconnected("gone"), False),
        (ConnectionResetError("reset"), False),
        (aiosmtplib.SMTPNotSupported("STARTTLS extension not supported by server"), True),
        (ssl.SSLCertVerificationError("self-signed certificate"), True),
    ],
)
async def test_smtp_errors_are_transient_or_permanent(monkeypatch, error, permanent):
    async def failing_deliver(self: Any, message: Any, recipient: str) -> None:
        raise error

    monkeypatch.setattr(EmailNotifier, "_deliver", failing_deliver)
    with pytest.raises(NotificationFailed) as raised:
        await EmailNotifier(settings()).send(contact=ANA, notice=notice())
    assert raised.value.permanent is permanent


async def test_smtp_settings_reach_aiosmtplib(monkeypatch, tmp_path):
    seen: dict[str, Any] = {}

    class FakeSMTP:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)

        async def connect(self) -> None:
            pass

        async def send_message(self, message: Any, **kwargs: Any) -> None:
            seen.update(kwargs)

        async def quit(self) -> None:
            seen["quit"] = True

    monkeypatch.setattr(email_module.aiosmtplib, "SMTP", FakeSMTP)
    ca = tmp_path / "ca.pem"
    notifier = EmailNotifier(
        settings(
            smtp_port=2525,
            smtp_user="alerts",
            smtp_password="s3cret",
            smtp_starttls=True,
            smtp_timeout=7,
            smtp_ca_file=ca,
        )
    )
    await notifier.send(contact=ANA, notice=notice())
    assert (seen["hostname"], seen["port"], seen["username"], seen["password"]) == (
        "smtp.acme.test",
        2525,
        "alerts",
        "s3cret",
    )
    assert (seen["start_tls"], seen["timeout"], seen["cert_bundle"]) == (True, 7, str(ca))
    assert (seen["sender"], seen["recipients"], seen["quit"]) == ("alerts@acme.test", ["ana@acme.test"], True)


def test_backoff_doubles_up_to_its_cap():
    policy = DispatchPolicy(max_attempts=6, first_backoff=1, max_backoff=16)
    assert [policy.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 16, 16]


def test_an_empty_kinds_list_means_every_kind():
    assert wants(ANA, "tamper")
    picky = Contact(2, 1, "Bob", "bob@acme.test", None, ("fall",), 0.0)
    assert wants(picky, "fall") and not wants(picky, "sos")

"""Email notifications through aiosmtplib (SOLEWATCH_SMTP_* settings)."""

from __future__ import annotations

import html
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr

import aiosmtplib

from services.notifications.notifier import AlertNotice, NotificationFailed
from shared.config import Settings
from shared.store.alerts import Contact


class EmailNotifier:
    channel = "email"

    def __init__(self, settings: Settings):
        if not settings.smtp_host:
            raise ValueError("email notifications need SOLEWATCH_SMTP_HOST")
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._user = settings.smtp_user
        self._password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        self._starttls = settings.smtp_starttls
        self._timeout = settings.smtp_timeout
        self._ca_file = str(settings.smtp_ca_file) if settings.smtp_ca_file else None
        name, address = parseaddr(settings.smtp_from or settings.smtp_user or "")
        if "@" not in address:
            address = "solewatch@localhost"
        self._sender = address
        self._from = formataddr((name or "solewatch", address))

    def reaches(self, contact: Contact) -> bool:
        return bool(contact.email)

    def message(self, *, contact: Contact, notice: AlertNotice) -> EmailMessage:
        """The email for one contact: plain text, with the same content as simple HTML."""
        assert contact.email
        message = EmailMessage()
        message["Subject"] = f"[solewatch] {notice.kind_label} — {notice.worker}"
        message["From"] = self._from
        message["To"] = formataddr((contact.name, contact.email))
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid("solewatch", domain=self._sender.rpartition("@")[2])
        message["X-Solewatch-Alert"] = str(notice.alert["id"])
        message.set_content(_text(notice))
        message.add_alternative(_html(notice), subtype="html")
        return message

    async def send(self, *, contact: Contact, notice: AlertNotice) -> None:
        """Send the email; None: SMTP reports no delivery status back."""
        await self.deliver(self.message(contact=contact, notice=notice), contact.email or "")

    def plain_message(self, *, to: str, subject: str, text: str) -> EmailMessage:
        """A plain-text email from this sender (account emails: invitations, password resets)."""
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self._from
        message["To"] = to
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid("solewatch", domain=self._sender.rpartition("@")[2])
        message.set_content(text)
        return message

    async def deliver(self, message: EmailMessage, recipient: str) -> None:
        """Hand the message to the SMTP server; NotificationFailed (permanent or not) when it cannot be."""
        try:
            await self._deliver(message, recipient)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            raise NotificationFailed(f"recipient refused: {exc}", permanent=all(c >= 500 for c in codes)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx: the server asks to try later; 5xx: it will never take this message.
            raise NotificationFailed(f"SMTP {exc.code} {exc.message}", permanent=exc.code >= 500) from exc
        except (aiosmtplib.SMTPNotSupported, ssl.SSLCertVerificationError) as exc:
            # A server without STARTTLS, or a certificate we do not trust: a
            # configuration problem that retrying cannot fix.
            raise NotificationFailed(f"SMTP misconfigured: {exc}", permanent=True) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:  # unreachable, timed out, disconnected
            raise NotificationFailed(f"SMTP unavailable: {type(exc).__name__}: {exc}") from exc

    async def _deliver(self, message: EmailMessage, recipient: str) -> None:
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._user,
            password=self._password,
            start_tls=self._starttls,
            timeout=self._timeout,
            cert_bundle=self._ca_file,
        )
        try:
            await client.connect()  # STARTTLS and login included
            await client.send_message(message, sender=self._sender, recipients=[recipient])
        except BaseException:
            # No polite QUIT (what aiosmtplib.send would do): a stalled server must
            # not hold a failed attempt, or a stopping process, for another timeout.
            client.close()
            raise
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()  # the message is already accepted


_ACKNOWLEDGE = (
    "Then acknowledge the alert in the solewatch dashboard: the worker's insole confirms that help"
    " is coming, and the other contacts see that someone is handling it."
)


def _text(notice: AlertNotice) -> str:
    alert = notice.alert
    lines = [
        f"{notice.kind_label}! — {notice.worker}",
        "",
        f"{notice.worker} (IMEI {alert['imei']}) raised an alert: {notice.kind_label}, at {notice.when}.",
    ]
    if notice.map_url:
        lines.append(f"Last known location: {alert['lat']}, {alert['lon']} — {notice.map_url}")
    else:
        lines.append("Last known location: location unknown (no GPS fix).")
    if alert.get("battery") is not None:
        lines.append(f"Insole battery: {alert['battery']}%")
    lines += [
        "",
        f"What to do: {notice.advice}",
        _ACKNOWLEDGE,
        "",
        f"Alert #{alert['id']}" + (f" — {notice.tenant_name}" if notice.tenant_name else ""),
    ]
    return "\n".join(lines) + "\n"


def _html(notice: AlertNotice) -> str:
    alert = notice.alert
    e = html.escape
    if notice.map_url:
        where = f'<a href="{e(notice.map_url)}">{e(str(alert["lat"]))}, {e(str(alert["lon"]))} (open the map)</a>'
    else:
        where = "location unknown (no GPS fix)"
    battery = f"<p>Insole battery: {e(str(alert['battery']))}%</p>" if alert.get("battery") is not None else ""
    footer = f"Alert #{e(str(alert['id']))}" + (f" — {e(notice.tenant_name)}" if notice.tenant_name else "")
    return (
        '<!DOCTYPE html><html><body style="font-family: sans-serif">'
        f'<h1 style="color: #b00020">{e(notice.kind_label)}! — {e(notice.worker)}</h1>'
        f"<p><strong>{e(notice.worker)}</strong> (IMEI {e(str(alert['imei']))}) raised an alert:"
        f" <strong>{e(notice.kind_label)}</strong>, at {e(notice.when)}.</p>"
        f"<p>Last known location: {where}</p>{battery}"
        f"<p><strong>What to do:</strong> {e(notice.advice)}</p>"
        f"<p>{e(_ACKNOWLEDGE)}</p>"
        f'<p style="color: #666">{footer}</p></body></html>'
    )

"""The weekly digest email (docs/reports.md): each week, to every active admin who asked for it.

Due once a week at `SOLEWATCH_DIGEST_WEEKDAY` (0 Monday) and
`SOLEWATCH_DIGEST_HOUR` UTC; it covers the seven days before that moment,
so a digest sent late (the service was down at the hour) says the same. The
notifications service looks every DIGEST_POLL_S whether a tenant's digest of
the current ISO week is due and not sent yet.

Exactly once per tenant and week, whatever the number of notifications
processes: the sender claims (tenant, week) in the store first
(shared/store/digest.py) and finishes the claim once a recipient has it. A
claim whose sender stopped half way, or could reach no recipient (SMTP down),
is taken again after STALE_CLAIM_S, so the week is not lost; a recipient
already sent to may then get it twice, which beats nobody getting it.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Literal, Protocol

from services.notifications.digest_content import SILENT_AFTER_S, Digest, SilentDevice, build_digest
from services.notifications.digest_content import html_body as digest_html
from services.notifications.digest_content import subject as digest_subject
from services.notifications.digest_content import text as digest_text
from services.notifications.email import EmailNotifier
from services.notifications.notifier import NotificationFailed
from services.notifications.periodic import PeriodicJob
from shared.config import Settings
from shared.logging import get_logger
from shared.store.accounts import AccountStore, Tenant, User
from shared.store.alerting import AlertingStore
from shared.store.devices import DeviceStore

log = get_logger("solewatch.digest")

WEEK_S = 7 * 86400
DIGEST_POLL_S = 300.0  # how often the service looks whether a digest is due
STALE_CLAIM_S = 3600.0  # an unfinished claim older than this is taken again
_DEVICE_PAGE = 500

Outcome = Literal["nobody", "taken", "sent", "failed"]


class DigestSources(AccountStore, DeviceStore, AlertingStore, Protocol):
    """What the digest reads (tenants, recipients, devices, alerts) and claims."""


def iso_week(t: float) -> str:
    """The ISO week of a moment, `2026-W10` (weeks start on Monday, UTC)."""
    year, week, _ = datetime.fromtimestamp(t, UTC).isocalendar()
    return f"{year}-W{week:02d}"


def due_at(t: float, *, weekday: int, hour: int) -> float:
    """When the digest of the ISO week holding `t` is due."""
    day = datetime.fromtimestamp(t, UTC).date()
    monday = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=day.weekday())
    return (monday + timedelta(days=weekday, hours=hour)).timestamp()


async def silent_devices(store: DigestSources, tenant_id: int, *, now: float) -> list[SilentDevice]:
    """The tenant's enabled devices with no frame for more than SILENT_AFTER_S (retired ones are gone);
    one never seen counts once registered for that long."""
    silent: list[SilentDevice] = []
    after: int | None = None
    while True:
        page = await store.devices(tenant_id, after_id=after, limit=_DEVICE_PAGE)
        for device in page:
            heard = device.last_seen if device.last_seen is not None else device.created_at
            if device.enabled and heard < now - SILENT_AFTER_S:
                silent.append(SilentDevice(device.imei, device.name, device.last_seen))
        if len(page) < _DEVICE_PAGE:
            return silent
        after = page[-1].id


async def tenant_digest(store: DigestSources, tenant: Tenant, *, week: str, until: float, now: float) -> Digest:
    """The digest of the seven days before `until`, with the devices silent at `now`."""
    since = until - WEEK_S
    alerts = await store.alerts_raised(tenant.id, since=since, until=until)
    device_ids = sorted({alert.device_id for alert in alerts})
    names = {device.id: device.name for device in await store.devices_by_ids(device_ids)}
    silent = await silent_devices(store, tenant.id, now=now)
    return build_digest(alerts, names, silent, tenant_name=tenant.name, week=week, since=since, until=until)


async def send_tenant_digest(
    store: DigestSources, mailer: EmailNotifier, tenant: Tenant, *, week: str, until: float, now: float
) -> tuple[Outcome, int]:
    """Claim the tenant's digest of `week` and send it to its recipients: the outcome and how many got it."""
    recipients = await store.digest_recipients(tenant.id)
    if not recipients:
        return "nobody", 0
    if not await store.claim_weekly_digest(tenant.id, week, stale_before=time.time() - STALE_CLAIM_S):
        return "taken", 0  # sent, or being sent, by another process (or an earlier run)
    digest = await tenant_digest(store, tenant, week=week, until=until, now=now)
    sent = 0
    for user in recipients:
        try:
            await mailer.deliver(_message(mailer, user, digest), user.email)
            sent += 1
        except NotificationFailed as exc:
            log.warning("digest_not_delivered", tenant_id=tenant.id, user_id=user.id, week=week, error=str(exc))
    if not sent:
        return "failed", 0  # the claim stays unfinished: taken again once stale
    await store.finish_weekly_digest(tenant.id, week, recipients=sent)
    log.info("digest_sent", tenant_id=tenant.id, week=week, recipients=sent, alerts=digest.total)
    return "sent", sent


def _message(mailer: EmailNotifier, user: User, digest: Digest) -> EmailMessage:
    message = mailer.plain_message(to=user.email, subject=digest_subject(digest), text=digest_text(digest))
    message.add_alternative(digest_html(digest), subtype="html")
    message["X-Solewatch-Digest"] = digest.week
    return message


async def send_digests_now(store: DigestSources, mailer: EmailNotifier, *, now: float | None = None) -> dict[str, int]:
    """This week's digest of every tenant at once, covering the seven days before now (`solewatch digest
    --now`); a tenant whose digest of this week already went out is left alone. Recipients per tenant."""
    now = time.time() if now is None else now
    week, sent = iso_week(now), {}
    for tenant in await store.tenants():
        outcome, count = await send_tenant_digest(store, mailer, tenant, week=week, until=now, now=now)
        if outcome == "sent":
            sent[tenant.name] = count
    return sent


class WeeklyDigest(PeriodicJob):
    """Runtime part of the notifications service: sends each tenant's digest once it is due."""

    name = "weekly-digest"
    interval = DIGEST_POLL_S

    def __init__(self, store: DigestSources, settings: Settings):
        super().__init__()
        self._store = store
        # (tenant, week) -> when to look again: after a claim refused or a send failed, once the
        # claim could be stale; never once sent. Keeps the polls from writing a claim every time.
        self._retry_at: dict[tuple[int, str], float] = {}
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        self.weekday, self.hour = settings.digest_weekday, settings.digest_hour
        self._mailer = EmailNotifier(settings) if settings.smtp_host else None

    def start(self) -> None:
        if self._mailer is None:
            log.info("digest_disabled", reason="no SOLEWATCH_SMTP_HOST")
        super().start()

    async def run_once(self, now: float | None = None) -> dict[int, Outcome]:
        """Send the digests of the current week that are due and not sent yet: outcome per tenant tried."""
        now = time.time() if now is None else now
        if self._mailer is None:
            return {}  # no SMTP server configured: nothing can be sent
        due = due_at(now, weekday=self.weekday, hour=self.hour)
        if now < due:
            return {}
        week, tried = iso_week(now), {}
        self._retry_at = {key: at for key, at in self._retry_at.items() if key[1] == week}
        for tenant in await self._store.tenants():
            if self.stopping:
                break
            if self._retry_at.get((tenant.id, week), 0.0) > now:
                continue
            outcome, _ = await send_tenant_digest(self._store, self._mailer, tenant, week=week, until=due, now=now)
            tried[tenant.id] = outcome
            if outcome != "nobody":  # an admin asking later this week still gets it: look again next poll
                self._retry_at[(tenant.id, week)] = math.inf if outcome == "sent" else now + STALE_CLAIM_S
        return tried

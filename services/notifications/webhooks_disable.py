"""A webhook endpoint that keeps failing is disabled, and its tenant's admins are emailed (issue 16).

An endpoint's `failing_since` is kept by the store with each attempt (set by the
first failure after a delivery, cleared by the next delivery). After a failed
attempt, the sender that made it asks here whether the endpoint has been failing
for `webhook_disable_after` (24 h by default); if so the store disables it with a
conditional update, written with a `webhook.disable` audit entry by the system
actor "webhooks". Several notifications processes may find it failing at once:
only the one whose update flipped it emails, so each admin hears once.

The email goes through the same SMTP sender as invitations and password resets,
once per admin: a message the SMTP server refuses is logged, not retried (the
audit entry and the endpoint's `enabled: false` still say what happened).
"""

from __future__ import annotations

from typing import Protocol

from services.authn.account_mail import public_base, send
from shared.alerts import iso_utc
from shared.config import Settings
from shared.logging import get_logger
from shared.store.accounts import AccountStore, User
from shared.store.audit import Actor, AuditEntry
from shared.store.webhooks import WebhookEndpoint, WebhookStore

log = get_logger("solewatch.webhooks")

ACTOR = Actor.system("webhooks")
_USERS_PAGE = 100


class DisablingStore(WebhookStore, AccountStore, Protocol):
    """What disabling needs: the endpoints, and the tenant's users to tell."""


async def disable_if_failing_too_long(
    store: DisablingStore, settings: Settings, endpoint: WebhookEndpoint, *, last_error: str, now: float
) -> bool:
    """After a failed attempt to `endpoint` (as read before it): disable it if it has been failing
    for `webhook_disable_after` and email the tenant's admins. True when this call disabled it."""
    if endpoint.failing_since is None or now - endpoint.failing_since < settings.webhook_disable_after:
        return False
    since = iso_utc(endpoint.failing_since, millis=True)
    detail = {
        "reason": f"no delivery for {_duration(now - endpoint.failing_since)}",
        "failing_since": since,
        "last_error": last_error,
        "url": endpoint.url,
    }
    disabled = await store.disable_failing_webhook_endpoint(
        endpoint.tenant_id,
        endpoint.id,
        failing_since_by=now - settings.webhook_disable_after,
        audit=AuditEntry(endpoint.tenant_id, ACTOR, "webhook.disable", "webhook_endpoint", str(endpoint.id), detail),
    )
    if disabled is None:  # another sender disabled it first, an admin did, or it recovered meanwhile
        return False
    log.warning("webhook_endpoint_disabled", endpoint_id=endpoint.id, failing_since=since, error=last_error)
    admins = await tenant_admins(store, endpoint.tenant_id)
    tenant = await store.tenant(endpoint.tenant_id)
    subject = f"[solewatch] Webhook endpoint {endpoint.id} disabled: failing since {since}"
    text = disabled_text(settings, disabled, tenant=tenant.name if tenant else None, last_error=last_error, now=now)
    for admin in admins:
        await send(settings, to=admin.email, subject=subject, text=text)
    return True


async def tenant_admins(store: AccountStore, tenant_id: int) -> list[User]:
    """The tenant's active admins (invited or disabled ones cannot act on the email)."""
    admins: list[User] = []
    after_id: int | None = None
    while True:
        page = await store.users(tenant_id, after_id=after_id, limit=_USERS_PAGE)
        admins += [user for user in page if user.is_active_admin]
        if len(page) < _USERS_PAGE:
            return admins
        after_id = page[-1].id


def disabled_text(
    settings: Settings, endpoint: WebhookEndpoint, *, tenant: str | None, last_error: str, now: float
) -> str:
    """The admins' email: which endpoint, since when it fails and why, and how to enable it again."""
    assert endpoint.failing_since is not None
    name = f"{endpoint.url}" + (f" ({endpoint.description})" if endpoint.description else "")
    window = _duration(settings.webhook_retry_window)
    url = f"{public_base(settings)}/api/v1/webhook-endpoints/{endpoint.id}"
    return (
        f"solewatch disabled the webhook endpoint {endpoint.id}{f' of {tenant}' if tenant else ''}:\n"
        f"  {name}\n\n"
        f"Every attempt to deliver an event to it has failed since {iso_utc(endpoint.failing_since, millis=True)}"
        f" ({_duration(now - endpoint.failing_since)} ago).\n"
        f"The last attempt failed with: {last_error}\n\n"
        "Nothing is sent to it while it is disabled, and new events are not queued for it. Events it was\n"
        f"already owed stay in its delivery log: those still within their {window} retry window are sent as\n"
        "soon as it is enabled again; the others are marked failed, and an admin can send them again with\n"
        f"POST {url}/deliveries/<event_id>/retry (GET {url}/deliveries lists them).\n\n"
        "Once the receiver answers again, enable the endpoint (as an admin, or with an admin API key):\n\n"
        f"  PATCH {url}\n"
        '  {"enabled": true}\n'
    )


def _duration(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"

"""Acknowledging an alert by replying to its SMS (CONTRACT §6): what a reply does, and the
text answered to it. services/api/webhooks_sms.py wraps that text in TwiML.

A reply reaches only the alerts notified to the phone it came from (the store
looks codes up by phone), and acknowledges as the contact that phone belongs
to: a code typed on any other phone, of this tenant or another, matches nothing.
"""

from __future__ import annotations

import re

from services.context import ServiceContext
from services.notifications.actions import acknowledge_alert, contact_actor, contact_audit_actor
from shared.alerts.worker import worker_name
from shared.logging import get_logger
from shared.store.alerts import Alert, AlertTransitionRefused, Contact
from shared.store.sms_replies import CODE_DIGITS, ReplyCode

log = get_logger("solewatch.notifications")

_CODE = re.compile(rf"(?<!\d)\d{{{CODE_DIGITS}}}(?!\d)")
MAX_LISTED = 5  # an answer stays one or two SMS segments


async def answer_sms_reply(context: ServiceContext, *, phone: str, body: str) -> str:
    """Acknowledge the alert whose code `body` holds, if `phone` was notified of it; the answer
    to text back: a confirmation, else the phone's open alerts and their codes, or none."""
    held = await context.store.reply_codes(phone) if phone else []
    by_code = {reply.code: reply for reply in held}
    for code in _CODE.findall(body):
        reply = by_code.get(code)
        if reply is None:
            continue
        contact = await _contact_of(context, reply)
        if contact is None:  # the contact was deleted, or their number changed: no longer theirs to acknowledge
            log.warning(
                "sms_reply_refused",
                alert_id=reply.alert_id,
                tenant_id=reply.tenant_id,
                reason="no contact with that phone any more",
            )
            continue
        return await _acknowledge(context, reply, contact)
    log.info("sms_reply_without_code", codes_held=len(held))
    return await _open_alerts(context, held)


async def _acknowledge(context: ServiceContext, reply: ReplyCode, contact: Contact) -> str:
    before = await context.store.alert(reply.tenant_id, reply.alert_id)
    if before is not None and before.status == "acknowledged":  # someone else was first (names may repeat)
        return f"{await _describe(context, before)} was already acknowledged by {before.acknowledged_by}."
    try:
        alert = await acknowledge_alert(
            context,
            tenant_id=reply.tenant_id,
            alert_id=reply.alert_id,
            by=contact_actor(contact),
            via="sms",
            contact_id=contact.id,
            audit_actor=contact_audit_actor(contact),
        )
    except AlertTransitionRefused:
        return f"solewatch alert #{reply.alert_id} is already resolved."
    if alert is None:
        return f"solewatch alert #{reply.alert_id} no longer exists."
    named = await _describe(context, alert)
    if alert.acknowledged_by != contact_actor(contact):
        return f"{named} was already acknowledged by {alert.acknowledged_by}."
    log.info("alert_acknowledged_by_sms", alert_id=alert.id, tenant_id=alert.tenant_id, contact_id=contact.id)
    return f"{named} acknowledged by you. Thank you."


async def _open_alerts(context: ServiceContext, held: list[ReplyCode]) -> str:
    listed: list[str] = []
    for reply in held:
        alert = await context.store.alert(reply.tenant_id, reply.alert_id)
        if alert is not None and alert.status == "open":  # acknowledged ones need nothing more
            listed.append(f"{reply.code} for {await _describe(context, alert)}")
    if not listed:
        return "You have no open solewatch alert to acknowledge."
    more = f" (and {len(listed) - MAX_LISTED} more)" if len(listed) > MAX_LISTED else ""
    return "Reply with the code of the alert to acknowledge: " + "; ".join(listed[:MAX_LISTED]) + more + "."


async def _contact_of(context: ServiceContext, reply: ReplyCode) -> Contact | None:
    """The contact the code was sent to, while that is still their phone: nobody else was told
    of the alert, even one who has this number now (CONTRACT §6: "notified to a contact")."""
    return next(
        (
            c
            for c in await context.store.contacts(reply.tenant_id)
            if c.id == reply.contact_id and c.phone == reply.phone
        ),
        None,
    )


async def _describe(context: ServiceContext, alert: Alert) -> str:
    """`alert #12 (SOS, Simulated worker 3)`."""
    worker = await worker_name(context.store, alert) or f"device {alert.imei}"
    return f"alert #{alert.id} ({alert.kind.replace('_', ' ').upper()}, {worker})"

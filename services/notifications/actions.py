"""What people do to alerts (the API calls these): acknowledge and resolve, with their side effects."""

from __future__ import annotations

from typing import Any

from services.context import CommandSender, ServiceContext
from services.notifications.metrics import notifications_sent
from shared.alerts.ledger import CHANNEL_DEVICE, DEVICE_RECIPIENT, NotificationKey
from shared.logging import get_logger
from shared.protocols.xsole import CommandCode
from shared.store import AlertingStore
from shared.store.alerts import Alert, Contact
from shared.store.audit import Actor, AuditEntry

log = get_logger("solewatch.alerts")


# How an acknowledgement reached solewatch; recorded as `via` on the `acknowledged` timeline line.
ACK_CHANNELS = frozenset({"dashboard", "api", "sms", "voice", "push"})


def contact_actor(contact: Contact) -> str:
    """How a contact who acknowledged (by SMS reply, key press, push) appears as `by`: their name,
    as the supervisor knows them; the timeline line's detail also carries their `contact_id`."""
    return contact.name


def contact_audit_actor(contact: Contact) -> Actor:
    """How a contact who acknowledged by SMS reply or call appears in the audit log."""
    return Actor("contact", str(contact.id), contact.name)


async def acknowledge_alert(
    context: ServiceContext,
    *,
    tenant_id: int,
    alert_id: int,
    by: str,
    via: str = "api",
    contact_id: int | None = None,
    audit_actor: Actor | None = None,
) -> Alert | None:
    """Acknowledge an alert; None when the tenant has no such alert.

    `by` is who: a signed-in user's `principal.actor`, or for a contact
    `contact_actor(contact)` with `contact_id` set. `via` (one of ACK_CHANNELS)
    is how; both land in the `acknowledged` timeline line's detail, e.g.
    {"via": "sms", "contact_id": 7}. Only the first acknowledgement is recorded.

    An alert raised by a device's ALARM also sends that device COMMAND
    alarm-acknowledged (cmd 4), now if it is connected, else when it reconnects:
    exactly once per alert, however often (or concurrently) it is acknowledged.
    Raises AlertTransitionRefused when the alert is already resolved.

    With `audit_actor`, the acknowledgement writes an `alert.ack` audit entry
    (detail: `via`, and `contact_id` for a contact) with the change itself; a
    repeat changes nothing and writes none.
    """
    if via not in ACK_CHANNELS:
        raise ValueError(f"unknown acknowledgement channel {via!r}")
    detail: dict[str, Any] = {"via": via}
    if contact_id is not None:
        detail["contact_id"] = contact_id
    audit = (
        None if audit_actor is None else AuditEntry(tenant_id, audit_actor, "alert.ack", "alert", str(alert_id), detail)
    )
    alert = await context.store.acknowledge_alert(tenant_id, alert_id, by=by, detail=detail, audit=audit)
    if alert is not None:
        # Escalation stops now (the escalator would also stop at its next check).
        await context.store.cancel_escalation(alert.id)
        await tell_device_acknowledged(context.store, context.commands, alert)
    return alert


async def resolve_alert(
    context: ServiceContext,
    *,
    tenant_id: int,
    alert_id: int,
    by: str,
    note: str | None = None,
    audit_actor: Actor | None = None,
) -> Alert | None:
    """Resolve an open or acknowledged alert (resolving twice changes nothing); None when there is no such alert.
    With `audit_actor`, an `alert.resolve` entry (detail: the note) is written with the change."""
    audit = None
    if audit_actor is not None:
        audit = AuditEntry(tenant_id, audit_actor, "alert.resolve", "alert", str(alert_id), {"note": note})
    alert = await context.store.resolve_alert(tenant_id, alert_id, by=by, note=note, audit=audit)
    if alert is not None:
        await context.store.cancel_escalation(alert.id)
    return alert


async def tell_device_acknowledged(
    store: AlertingStore, commands: CommandSender, alert: Alert, *, claimed: bool = False
) -> bool:
    """Queue cmd 4 for the alert's device once; True when this call queued it.

    The notification ledger is the exactly-once key (channel `device`). When
    queueing fails after the claim, the claim is handed back as `interrupted`
    and the notifications service sends it later: the acknowledgement itself
    already succeeded and must not fail because of the device.
    """
    if alert.alarm_id is None or alert.status == "open":
        return False  # no device alarm to answer, or nothing acknowledged yet
    key = NotificationKey(alert.id, DEVICE_RECIPIENT, CHANNEL_DEVICE, 1)._asdict()
    if not claimed and not await store.claim_notification(**key):
        return False
    try:
        command_id = await commands.send_command(device_id=alert.device_id, cmd=CommandCode.ALARM_ACKNOWLEDGED)
    except Exception as exc:
        log.warning("device_ack_command_failed", alert_id=alert.id, device_id=alert.device_id, error=str(exc))
        try:
            await store.finish_notification(**key, status="interrupted", attempts=1, error=str(exc))
        except Exception:
            log.exception("device_ack_command_not_recorded", alert_id=alert.id)
        return False
    notifications_sent.labels(CHANNEL_DEVICE).inc()
    try:
        await store.finish_notification(**key, status="sent", attempts=1)
        await store.add_alert_event(
            alert.id,
            action="device_notified",
            actor=None,
            detail={
                "command": "alarm-acknowledged",
                "cmd": int(CommandCode.ALARM_ACKNOWLEDGED),
                "command_id": command_id,
            },
        )
    except Exception:  # queued all the same; at worst the unfinished claim sends it once more
        log.exception("device_ack_command_not_recorded", alert_id=alert.id)
    log.info("device_ack_command_queued", alert_id=alert.id, imei=alert.imei, command_id=command_id)
    return True

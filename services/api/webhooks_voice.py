"""/api/v1/webhooks/twilio/voice: what an alert call says, the key pressed, and how the call went.

services/notifications/voice.py places the call with these URLs; Twilio calls
them back signed with the account's auth token (checked by
services/api/twilio_signature.py, 403 otherwise). The alert and the contact are
named in the query string, which the signature covers, and the contact must be
one the alert was phoned to: pressing 1 acknowledges as that contact, nobody else.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from prometheus_client import Counter
from twilio.twiml.voice_response import VoiceResponse

from services.api.deps import ContextDep
from services.api.twilio_signature import verified_twilio_form
from services.authn.models import ErrorOut
from services.context import ServiceContext
from services.notifications.actions import acknowledge_alert, contact_actor, contact_audit_actor
from services.notifications.notifier import AlertNotice
from services.notifications.voice import (
    CALL_STATUS_PATH,
    GATHER_PATH,
    VOICE_PATH,
    call_url,
    spoken_worker,
    voice_configured,
    voice_script,
)
from shared.alerts import alert_to_api
from shared.alerts.ledger import NotificationRecovery
from shared.alerts.worker import worker_name
from shared.logging import get_logger
from shared.store.alerts import Alert, AlertTransitionRefused, Contact

log = get_logger("solewatch.api")

router = APIRouter(prefix="/api/v1/webhooks/twilio", tags=["webhooks"])

ACKNOWLEDGE_DIGIT = "1"
MAX_ROUNDS = 3  # the alert is read at most this many times per call, then the call ends
GATHER_TIMEOUT_S = 8  # seconds Twilio waits for a key after the script
STAYS_OPEN = "The alert stays open, and escalation goes on."
UNANSWERED = frozenset({"busy", "no-answer", "failed", "canceled"})  # a call nobody took: a failed delivery

voice_call_outcomes = Counter(
    "voice_call_outcomes_total", "Alert calls by final status (completed, no-answer...)", ["status"]
)

_TWIML = {"content": {"text/xml": {"schema": {"type": "string"}}}, "description": "TwiML for Twilio"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "missing or wrong X-Twilio-Signature"},
    404: {"model": ErrorOut, "description": "voice calls are not configured"},
    413: {"model": ErrorOut, "description": "more than a Twilio request could be"},
}

TenantQ = Annotated[int, Query(alias="tenant", description="the alert's tenant (set by solewatch in the call's URL)")]
AlertQ = Annotated[int, Query(alias="alert", description="the alert the call is about")]
ContactQ = Annotated[int, Query(alias="contact", description="the contact called")]
RoundQ = Annotated[int, Query(alias="round", ge=1, le=MAX_ROUNDS, description="how often the alert was read")]


async def _signed_form(request: Request, context: ContextDep) -> Any:
    """Twilio's form once its signature checks out. A dependency, so FastAPI runs it before it
    validates the query: an unsigned request gets 403, never a 422 about the query."""
    settings = context.settings
    if not voice_configured(settings):
        raise HTTPException(404, "voice calls are not configured")
    return await verified_twilio_form(request, settings)


SignedForm = Annotated[Any, Depends(_signed_form)]


@router.post(
    VOICE_PATH.removeprefix(router.prefix),
    response_class=Response,
    responses={200: _TWIML, **_ERRORS},
    summary="What an alert call says (called by Twilio when the call is answered)",
)
async def voice_script_twiml(
    params: SignedForm,
    context: ContextDep,
    tenant_id: TenantQ,
    alert_id: AlertQ,
    contact_id: ContactQ,
    round_: RoundQ = 1,
) -> Response:
    """Reads the alert (kind, worker, time, place) and gathers one key: 1 acknowledges."""
    found = await _call_subject(context, tenant_id, alert_id, contact_id)
    if found is None:
        return _twiml(_goodbye("This alert is no longer available."))
    alert, contact = found
    return _twiml(await _alert_reading(context, alert, contact, round_))


@router.post(
    GATHER_PATH.removeprefix(router.prefix),
    response_class=Response,
    responses={200: _TWIML, **_ERRORS},
    summary="The key pressed during an alert call (called by Twilio)",
)
async def voice_gather(
    params: SignedForm,
    context: ContextDep,
    tenant_id: TenantQ,
    alert_id: AlertQ,
    contact_id: ContactQ,
    round_: RoundQ = 1,
) -> Response:
    """`Digits` 1 acknowledges the alert as the contact called; another key reads it again."""
    found = await _call_subject(context, tenant_id, alert_id, contact_id)
    if found is None:
        return _twiml(_goodbye("This alert is no longer available."))
    alert, contact = found
    digits = params.get("Digits", "")
    if digits != ACKNOWLEDGE_DIGIT:
        log.info(
            "voice_key_ignored", alert_id=alert.id, contact_id=contact.id, digits=digits, call_sid=params.get("CallSid")
        )
        return _twiml(await _alert_reading(context, alert, contact, round_ + 1, prefix="That key does nothing."))
    try:
        acknowledged = await acknowledge_alert(
            context,
            tenant_id=tenant_id,
            alert_id=alert.id,
            by=contact_actor(contact),
            via="voice",
            contact_id=contact.id,
            audit_actor=contact_audit_actor(contact),
        )
    except AlertTransitionRefused:
        return _twiml(_goodbye(f"This alert was already resolved by {alert.resolved_by or 'someone'}."))
    assert acknowledged is not None  # found above, and alerts are never deleted
    if alert.status != "open" or acknowledged.acknowledged_by != contact_actor(contact):  # someone else was first
        return _twiml(_goodbye(f"This alert was already acknowledged by {acknowledged.acknowledged_by}."))
    log.warning("alert_acknowledged_by_phone", alert_id=alert.id, contact_id=contact.id, call_sid=params.get("CallSid"))
    worker = spoken_worker(await _notice(context, alert))
    return _twiml(
        _goodbye(f"Thank you. The alert is acknowledged and nobody else will be called. Please contact {worker} now.")
    )


@router.post(
    CALL_STATUS_PATH.removeprefix(router.prefix),
    status_code=204,
    response_class=Response,
    responses={**_ERRORS, 400: {"model": ErrorOut, "description": "no CallSid or CallStatus"}},
    summary="How an alert call went (called by Twilio)",
)
async def voice_status(params: SignedForm, context: ContextDep) -> Response:
    """`CallStatus` (in-progress, completed, busy, no-answer, failed...) joins the alert's timeline.
    Busy, no-answer and failed are a failed delivery: escalation goes on at its next step's time."""
    sid, status = params.get("CallSid"), params.get("CallStatus")
    if not sid or not status:
        raise HTTPException(400, "CallSid and CallStatus are required")
    error_code = params.get("ErrorCode") or params.get("SipResponseCode") or None
    alert_id = await context.store.record_delivery_status(provider_id=sid, status=status, error_code=error_code)
    if status in UNANSWERED or status == "completed":
        voice_call_outcomes.labels(status).inc()
    if status in UNANSWERED:
        log.warning("voice_call_unanswered", call_sid=sid, status=status, error_code=error_code, alert_id=alert_id)
    else:
        log.info("voice_call_status", call_sid=sid, status=status, alert_id=alert_id)
    return Response(status_code=204)


# -- helpers -------------------------------------------------------------------------------------


async def _call_subject(
    context: ServiceContext, tenant_id: int, alert_id: int, contact_id: int
) -> tuple[Alert, Contact] | None:
    """The alert and the contact of a call, when that contact was phoned about that alert."""
    store = context.store
    alert = await store.alert(tenant_id, alert_id)
    contact = next((c for c in await store.contacts(tenant_id) if c.id == contact_id), None)
    if alert is None or contact is None:
        log.warning("voice_call_unknown", tenant_id=tenant_id, alert_id=alert_id, contact_id=contact_id)
        return None
    # Every store adapter keeps the notification ledger; one that did not could prove no call.
    records = await store.notifications_of(tenant_id, alert_id) if isinstance(store, NotificationRecovery) else []
    phoned = any(record.contact_id == contact_id and record.channel == "voice" for record in records)
    if not phoned:
        log.warning("voice_call_not_placed", alert_id=alert_id, contact_id=contact_id)
        return None
    return alert, contact


async def _notice(context: ServiceContext, alert: Alert) -> AlertNotice:
    """The alert with its worker's name, as notifiers get it."""
    name = await worker_name(context.store, alert)
    return AlertNotice(alert=alert_to_api(alert), tenant_id=alert.tenant_id, device_name=name)


async def _alert_reading(
    context: ServiceContext, alert: Alert, contact: Contact, round_: int, *, prefix: str = ""
) -> VoiceResponse:
    """The alert read out; while it is open, followed by the offer to acknowledge."""
    if round_ > MAX_ROUNDS:
        return _goodbye(STAYS_OPEN)
    script = voice_script(await _notice(context, alert))
    if prefix:
        script = f"{prefix} {script}"
    if alert.status == "acknowledged":
        return _goodbye(f"{script} It was already acknowledged by {alert.acknowledged_by}. No action is needed.")
    if alert.status == "resolved":
        return _goodbye(f"{script} It was already resolved.")
    ids = {"tenant_id": alert.tenant_id, "alert_id": alert.id, "contact_id": contact.id}
    response = VoiceResponse()
    gather = response.gather(
        num_digits=1,
        timeout=GATHER_TIMEOUT_S,
        method="POST",
        action=call_url(context.settings, GATHER_PATH, **ids, round_=round_),
    )
    gather.say(script)
    gather.say("Press 1 to acknowledge this alert. Press any other key to hear it again.")
    if round_ < MAX_ROUNDS:  # no key pressed: read it again
        response.redirect(call_url(context.settings, VOICE_PATH, **ids, round_=round_ + 1), method="POST")
    else:
        response.say(f"No key was pressed. {STAYS_OPEN} Goodbye.")
        response.hangup()
    return response


def _goodbye(text: str) -> VoiceResponse:
    response = VoiceResponse()
    response.say(f"{text} Goodbye.")
    response.hangup()
    return response


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response), media_type="text/xml")

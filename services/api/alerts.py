"""/api/v1/alerts: what happened, newest first, and the supervisor's acknowledge and resolve."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Query

from services.api.deps import ContextDep, CurrentPrincipal, ResourceId, SupervisorPrincipal
from services.api.models import (
    IMEI_PATTERN,
    AlertDetail,
    AlertOut,
    AlertPage,
    AlertStatus,
    ResolveIn,
)
from services.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from services.authn.models import ErrorOut
from services.notifications.actions import acknowledge_alert, resolve_alert
from shared.alerts import alert_to_api, iso_utc
from shared.store.alerts import Alert, AlertTransitionRefused

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such alert in the caller's tenant"},
    409: {
        "model": ErrorOut,
        "description": "the alert's status does not allow this change (acknowledging a resolved alert)",
    },
}


@router.get("", response_model=AlertPage, summary="List alerts, newest first")
async def list_alerts(
    context: ContextDep,
    principal: CurrentPrincipal,
    status: AlertStatus | None = None,
    imei: Annotated[str | None, Query(pattern=IMEI_PATTERN)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    before_id = decode_cursor(cursor, 1)[0] if cursor else None
    alerts = await context.store.alerts(
        principal.tenant_id, status=status, imei=imei, before_id=before_id, limit=limit + 1
    )
    page = alerts[:limit]
    return {
        "items": [alert_to_api(alert) for alert in page],
        "next_cursor": encode_cursor(page[-1].id) if len(alerts) > limit else None,
    }


@router.get(
    "/{alert_id}",
    response_model=AlertDetail,
    summary="One alert with its timeline",
    responses={404: _CHANGE_RESPONSES[404]},
)
async def get_alert(alert_id: ResourceId, context: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    alert = _found(await context.store.alert(principal.tenant_id, alert_id))
    timeline = await context.store.alert_timeline(principal.tenant_id, alert_id)
    return alert_to_api(alert) | {
        "timeline": [
            {"at": iso_utc(event.at, millis=True), "action": event.action, "actor": event.actor, "detail": event.detail}
            for event in timeline
        ]
    }


@router.post(
    "/{alert_id}/ack",
    response_model=AlertOut,
    responses=_CHANGE_RESPONSES,
    summary="Acknowledge an alert (supervisor); the insole vibrates to say help is coming",
)
async def ack_alert(
    alert_id: ResourceId,
    context: ContextDep,
    principal: SupervisorPrincipal,
    client: Annotated[
        str | None,
        Header(
            alias="X-Solewatch-Client",
            description=(
                "`dashboard` when the dashboard sends it; the timeline then says the alert was acknowledged"
                " via the dashboard rather than via the API"
            ),
        ),
    ] = None,
) -> dict[str, Any]:
    try:
        alert = await acknowledge_alert(
            context,
            tenant_id=principal.tenant_id,
            alert_id=alert_id,
            by=principal.actor,
            via="dashboard" if client == "dashboard" else "api",
            audit_actor=principal.audit_actor,
        )
    except AlertTransitionRefused:
        raise HTTPException(409, "the alert is resolved and can no longer be acknowledged") from None
    return alert_to_api(_found(alert))


@router.post(
    "/{alert_id}/resolve",
    response_model=AlertOut,
    responses=_CHANGE_RESPONSES,
    summary="Resolve an alert (supervisor), with an optional note",
)
async def resolve(
    alert_id: ResourceId,
    context: ContextDep,
    principal: SupervisorPrincipal,
    body: Annotated[ResolveIn | None, Body()] = None,
) -> dict[str, Any]:
    try:
        alert = await resolve_alert(
            context,
            tenant_id=principal.tenant_id,
            alert_id=alert_id,
            by=principal.actor,
            note=body.note if body else None,
            audit_actor=principal.audit_actor,
        )
    except AlertTransitionRefused:
        raise HTTPException(409, "the alert's status does not allow resolving it") from None
    return alert_to_api(_found(alert))


def _found(alert: Alert | None) -> Alert:
    if alert is None:
        raise HTTPException(404, "alert not found")
    return alert

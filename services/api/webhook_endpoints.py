"""/api/v1/webhook-endpoints (CONTRACT §7): where a tenant's partners are told of events, and what
was sent to them. Admins only, API keys of the admin role included (a partner may manage its own)."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response

from services.api.deps import AdminPrincipal, ContextDep, ResourceId
from services.api.errors import invalid_field
from services.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from services.api.webhook_endpoints_models import (
    WebhookDeliveryPage,
    WebhookEndpointCreated,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointPage,
    WebhookEndpointPatch,
    WebhookQueued,
)
from services.authn.models import ErrorOut
from services.context import ServiceContext
from services.notifications.webhooks_outbound import resolved_problem, url_problem
from shared.alerts import iso_utc
from shared.store.webhooks import WebhookDelivery, WebhookEndpoint
from shared.webhook_events import ping_event

router = APIRouter(prefix="/api/v1/webhook-endpoints", tags=["webhook-endpoints"])

EventId = Annotated[str, Path(pattern=r"^evt_[0-9a-f]{24}$", description="the delivery's `event_id`")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such endpoint in the caller's tenant"}
}
_REFUSED_URL: dict[int | str, dict[str, Any]] = {
    422: {"description": "a malformed body, or a URL production does not post to (not https, not public)"}
}


def endpoint_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "created_at": iso_utc(endpoint.created_at, millis=True),
    }


def delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "event_id": delivery.event_id,
        "type": delivery.type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "next_attempt_at": iso_utc(delivery.next_attempt_at, millis=True),
        "delivered_at": iso_utc(delivery.delivered_at, millis=True),
        "created_at": iso_utc(delivery.created_at, millis=True),
    }


async def _check_url(url: str, context: ServiceContext) -> None:
    """422 for a URL this deployment will not post to."""
    production = context.settings.environment == "production"
    problem = url_problem(url, production=production)
    if problem is None and production:
        problem = await resolved_problem(url)
    if problem is not None:
        raise invalid_field("body", "url", msg=problem)


async def _endpoint(context: ServiceContext, tenant_id: int, endpoint_id: int) -> WebhookEndpoint:
    endpoint = await context.store.webhook_endpoint(tenant_id, endpoint_id)
    if endpoint is None:
        raise HTTPException(404, "webhook endpoint not found")
    return endpoint


def _new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


@router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointCreated,
    summary="Register a webhook endpoint (admin); its signing secret is shown only here",
    responses=_REFUSED_URL,
)
async def create_endpoint(body: WebhookEndpointIn, context: ContextDep, principal: AdminPrincipal) -> dict[str, Any]:
    await _check_url(body.url, context)
    secret = _new_secret()
    endpoint = await context.store.add_webhook_endpoint(
        tenant_id=principal.tenant_id,
        url=body.url,
        events=list(dict.fromkeys(body.events)),
        description=body.description,
        secret=secret,
        audit=principal.audit("webhook.create", "webhook_endpoint", url=body.url, events=list(body.events)),
    )
    return {**endpoint_view(endpoint), "secret": secret}


@router.get("", response_model=WebhookEndpointPage, summary="List the tenant's webhook endpoints (admin)")
async def list_endpoints(
    context: ContextDep, principal: AdminPrincipal, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    after_id = decode_cursor(cursor, 1)[0] if cursor else None
    found = await context.store.webhook_endpoints(principal.tenant_id, after_id=after_id, limit=limit + 1)
    page = found[:limit]
    return {
        "items": [endpoint_view(endpoint) for endpoint in page],
        "next_cursor": encode_cursor(page[-1].id) if len(found) > limit else None,
    }


@router.get(
    "/{endpoint_id}", response_model=WebhookEndpointOut, summary="One webhook endpoint (admin)", responses=_NOT_FOUND
)
async def get_endpoint(endpoint_id: ResourceId, context: ContextDep, principal: AdminPrincipal) -> dict[str, Any]:
    return endpoint_view(await _endpoint(context, principal.tenant_id, endpoint_id))


@router.patch(
    "/{endpoint_id}",
    response_model=WebhookEndpointOut,
    summary="Change a webhook endpoint's url, events or enabled (admin)",
    responses={**_NOT_FOUND, **_REFUSED_URL},
)
async def update_endpoint(
    endpoint_id: ResourceId, body: WebhookEndpointPatch, context: ContextDep, principal: AdminPrincipal
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    if body.url is not None:
        await _check_url(body.url, context)
    endpoint = await context.store.update_webhook_endpoint(
        principal.tenant_id,
        endpoint_id,
        url=body.url,
        events=None if body.events is None else list(dict.fromkeys(body.events)),
        enabled=body.enabled,
        description=body.description,
        audit=principal.audit("webhook.update", "webhook_endpoint", endpoint_id, **changes),
    )
    if endpoint is None:
        raise HTTPException(404, "webhook endpoint not found")
    return endpoint_view(endpoint)


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    response_class=Response,
    summary="Remove a webhook endpoint and its delivery log (admin)",
    responses=_NOT_FOUND,
)
async def delete_endpoint(endpoint_id: ResourceId, context: ContextDep, principal: AdminPrincipal) -> Response:
    audit = principal.audit("webhook.delete", "webhook_endpoint", endpoint_id)
    if not await context.store.delete_webhook_endpoint(principal.tenant_id, endpoint_id, audit=audit):
        raise HTTPException(404, "webhook endpoint not found")
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/ping",
    status_code=202,
    response_model=WebhookQueued,
    summary="Send a `ping` event to the endpoint (admin)",
    responses=_NOT_FOUND,
)
async def ping_endpoint(endpoint_id: ResourceId, context: ContextDep, principal: AdminPrincipal) -> dict[str, Any]:
    endpoint = await _endpoint(context, principal.tenant_id, endpoint_id)
    now = time.time()
    event = ping_event(principal.tenant_id, endpoint.id, now)
    await context.store.queue_webhook_event(
        tenant_id=event.tenant_id,
        endpoint_ids=[endpoint.id],
        event_id=event.id,
        type=event.type,
        payload=event.body,
        at=now,
    )
    return {"event_id": event.id, "status": "pending"}


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=WebhookDeliveryPage,
    summary="What was sent to the endpoint, newest first (admin)",
    responses=_NOT_FOUND,
)
async def list_deliveries(
    endpoint_id: ResourceId, context: ContextDep, principal: AdminPrincipal, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    await _endpoint(context, principal.tenant_id, endpoint_id)
    before_id = decode_cursor(cursor, 1)[0] if cursor else None
    found = await context.store.webhook_deliveries(
        principal.tenant_id, endpoint_id, before_id=before_id, limit=limit + 1
    )
    page = found[:limit]
    return {
        "items": [delivery_view(delivery) for delivery in page],
        "next_cursor": encode_cursor(page[-1].id) if len(found) > limit else None,
    }


@router.post(
    "/{endpoint_id}/deliveries/{event_id}/retry",
    status_code=202,
    response_model=WebhookQueued,
    summary="Send an event again now, even if it was delivered (admin)",
    responses={404: {"model": ErrorOut, "description": "no such endpoint, or no such event sent to it"}},
)
async def retry_delivery(
    endpoint_id: ResourceId, event_id: EventId, context: ContextDep, principal: AdminPrincipal
) -> dict[str, Any]:
    if not await context.store.retry_webhook_delivery(principal.tenant_id, endpoint_id, event_id, now=time.time()):
        raise HTTPException(404, "no such delivery for this endpoint")
    return {"event_id": event_id, "status": "pending"}

"""/api/v1/push-subscriptions: browsers that show new alerts as notifications; /api/v1/push/acknowledge:
the notification's Acknowledge button (services/notifications/push.py sends them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import ContextDep, ResourceId, SupervisorPrincipal
from services.api.models import AlertOut
from services.authn.deps import Principal
from services.authn.models import ErrorOut
from services.authn.tokens import InvalidToken
from services.notifications.actions import acknowledge_alert
from services.notifications.push import (
    endpoint_problem,
    may_be_told,
    vapid_key,
    vapid_public_key,
    verify_ack_token,
)
from shared.alerts import alert_to_api
from shared.config import Settings
from shared.store.alerts import AlertTransitionRefused
from shared.store.audit import Actor

router = APIRouter(prefix="/api/v1/push-subscriptions", tags=["push"])
ack_router = APIRouter(prefix="/api/v1/push", tags=["push"])


class PushKeys(BaseModel):
    # The lengths are the keys' (65 and 16 bytes in base64url), so the spec says exactly what is accepted.
    p256dh: str = Field(
        pattern=r"^[A-Za-z0-9_-]{87}=?$", description="the browser's P-256 public key, base64url (65 bytes)"
    )
    auth: str = Field(
        pattern=r"^[A-Za-z0-9_-]{22}(==)?$", description="the browser's auth secret, base64url (16 bytes)"
    )


class PushSubscriptionIn(BaseModel):
    endpoint: str = Field(
        max_length=2048,
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[!-~]*)?$",
        description="the push service's URL for this browser (https in production)",
    )
    keys: PushKeys
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "endpoint": "https://fcm.googleapis.com/fcm/send/c1KrmpTuRm:APA91bH",
                    "keys": {
                        "p256dh": (
                            "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
                        ),
                        "auth": "tBHItJI5svbpez7KI4CCXg",
                    },
                }
            ]
        },
    )


class PushSubscriptionOut(BaseModel):
    id: int


class VapidPublicKeyOut(BaseModel):
    public_key: str = Field(description="base64url of the uncompressed P-256 point: the browser's applicationServerKey")


class PushAcknowledgeIn(BaseModel):
    token: str = Field(min_length=1, max_length=2000, description="the acknowledge token the push message carried")


_INVALID_TOKEN: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorOut,
        "description": "the token is invalid or expired, or its user may no longer acknowledge alerts",
    }
}


def _endpoint_problem(endpoint: str, settings: Settings) -> str | None:
    """Why a push endpoint is refused, or None. In production only https to a public host: the server
    posts to whatever is given, so a loopback or private address would let a user make it call inside.
    (A name resolving inside passes here, and is refused when pushed to: services/notifications/push.py.)"""
    return endpoint_problem(endpoint) if settings.environment == "production" else None


def _user(principal: Principal) -> int:
    if principal.user_id is None:
        raise HTTPException(403, "this needs a signed-in user, not an API key")
    return principal.user_id


@router.post(
    "",
    status_code=201,
    response_model=PushSubscriptionOut,
    summary="Show new alerts on this browser (supervisor): keep its push subscription",
    responses={422: {"description": "the endpoint or keys are not usable"}},
)
async def subscribe(body: PushSubscriptionIn, context: ContextDep, principal: SupervisorPrincipal) -> dict[str, Any]:
    user_id = _user(principal)
    problem = _endpoint_problem(body.endpoint, context.settings)
    if problem is not None:
        raise HTTPException(422, problem)
    subscription = await context.store.add_push_subscription(
        tenant_id=principal.tenant_id,
        user_id=user_id,
        endpoint=body.endpoint,
        p256dh=body.keys.p256dh,
        auth=body.keys.auth,
    )
    return {"id": subscription.id}


@router.get(
    "/vapid-public-key",
    response_model=VapidPublicKeyOut,
    summary="The server's VAPID public key, to subscribe a browser with",
)
async def public_key(context: ContextDep, principal: SupervisorPrincipal) -> dict[str, Any]:
    return {"public_key": vapid_public_key(await vapid_key(context.settings, context.store))}


# `:int`, so that the path never matches /vapid-public-key (whose Allow must not list DELETE).
@router.delete(
    "/{subscription_id:int}",
    status_code=204,
    response_class=Response,
    summary="Stop showing new alerts on a browser (the caller's own subscriptions)",
    responses={404: {"model": ErrorOut, "description": "no such subscription of the caller"}},
)
async def unsubscribe(subscription_id: ResourceId, context: ContextDep, principal: SupervisorPrincipal) -> Response:
    if not await context.store.delete_push_subscription(principal.tenant_id, subscription_id, user_id=_user(principal)):
        raise HTTPException(404, "push subscription not found")
    return Response(status_code=204)


@ack_router.post(
    "/acknowledge",
    response_model=AlertOut,
    summary=("Acknowledge the alert a push notification showed, with the token it carried (no session needed)"),
    responses=_INVALID_TOKEN
    | {
        404: {"model": ErrorOut, "description": "the alert no longer exists"},
        409: {"model": ErrorOut, "description": "the alert is resolved"},
    },
)
async def acknowledge_pushed(body: PushAcknowledgeIn, context: ContextDep) -> dict[str, Any]:
    # The token names one alert and one user; it is checked here only, so it opens nothing else.
    try:
        claims = verify_ack_token(context.settings, body.token)
    except InvalidToken as exc:
        raise HTTPException(401, str(exc)) from None
    user = await context.store.user(claims.user_id)
    if not may_be_told(user, claims.tenant_id):  # removed, moved or demoted since the push
        raise HTTPException(401, "this user may no longer acknowledge alerts")
    assert user is not None
    try:
        # The notification went to a signed-in user's browser: a user acknowledges, not a contact.
        alert = await acknowledge_alert(
            context,
            tenant_id=claims.tenant_id,
            alert_id=claims.alert_id,
            by=user.email,
            via="push",
            audit_actor=Actor("user", str(user.id), user.email),
        )
    except AlertTransitionRefused:
        raise HTTPException(409, "the alert is resolved and can no longer be acknowledged") from None
    if alert is None:
        raise HTTPException(404, "alert not found")
    return alert_to_api(alert)

"""/api/v1/escalation-policy: who is told at each step while nobody acknowledges an alert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import AdminPrincipal, ContextDep, CurrentPrincipal
from services.notifications.voice import VOICE_NOT_CONFIGURED, voice_configured
from shared.alerts import iso_utc
from shared.store.escalation import MAX_STEPS, EscalationPolicy, EscalationStep

router = APIRouter(prefix="/api/v1/escalation-policy", tags=["escalation"])

MAX_WAIT_S = 24 * 3600

Channel = Literal["sms", "email", "voice"]  # shared.store.escalation.STEP_CHANNELS


class StepIn(BaseModel):
    # Strict numbers: JSON's true is neither a contact id nor a wait.
    contacts: list[Annotated[int, Field(strict=True)]] = Field(
        min_length=1, max_length=50, description="ids of the tenant's contacts to tell"
    )
    wait_s: float = Field(
        300,
        ge=10,
        le=MAX_WAIT_S,
        strict=True,
        description="seconds to wait for an acknowledgement before the next step",
    )
    channels: list[Channel] = Field(
        ["sms", "email"],
        min_length=1,
        max_length=3,  # DEFAULT_CHANNELS
        description="how the step's contacts are told; `voice` phones them",
    )
    model_config = ConfigDict(extra="forbid")


class PolicyIn(BaseModel):
    steps: list[StepIn] = Field(max_length=MAX_STEPS, description="in order; empty removes the policy")
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "steps": [
                        {"contacts": [1], "wait_s": 120},
                        {"contacts": [2, 3], "wait_s": 300, "channels": ["sms", "voice"]},
                    ]
                }
            ]
        },
    )


class StepOut(BaseModel):
    contacts: list[int]
    wait_s: float
    channels: list[Channel]


class PolicyOut(BaseModel):
    steps: list[StepOut] = Field(description="empty: every contact who wants the alert's kind is told at once")
    updated_at: str | None


def policy_view_steps(steps: Sequence[EscalationStep]) -> list[dict[str, Any]]:
    return [{"contacts": list(s.contact_ids), "wait_s": s.wait_s, "channels": list(s.channels)} for s in steps]


def policy_view(policy: EscalationPolicy | None) -> dict[str, Any]:
    if policy is None:
        return {"steps": [], "updated_at": None}
    return {"steps": policy_view_steps(policy.steps), "updated_at": iso_utc(policy.updated_at, millis=True)}


@router.get("", response_model=PolicyOut, summary="The tenant's escalation policy")
async def get_policy(context: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return policy_view(await context.store.escalation_policy(principal.tenant_id))


@router.put(
    "",
    response_model=PolicyOut,
    summary="Replace the tenant's escalation policy (admin)",
    responses={
        422: {
            "description": "invalid steps, a step names a contact the tenant does not have, "
            "or `voice` while calls are not configured"
        }
    },
)
async def put_policy(body: PolicyIn, context: ContextDep, principal: AdminPrincipal) -> dict[str, Any]:
    known = {contact.id for contact in await context.store.contacts(principal.tenant_id)}
    errors = [
        {
            "loc": ["body", "steps", number, "contacts", index],
            "msg": f"no contact {cid} in this tenant",
            "type": "unknown_contact",
        }
        for number, step in enumerate(body.steps)
        for index, cid in enumerate(step.contacts)
        if cid not in known
    ]
    # A step that phones, on a server that cannot place calls, would not tell whom it promises: refuse it now.
    if not voice_configured(context.settings):
        errors += [
            {
                "loc": ["body", "steps", number, "channels", index],
                "msg": VOICE_NOT_CONFIGURED,
                "type": "channel_not_configured",
            }
            for number, step in enumerate(body.steps)
            for index, channel in enumerate(step.channels)
            if channel == "voice"
        ]
    if errors:
        raise HTTPException(422, errors)
    steps = [
        EscalationStep(tuple(dict.fromkeys(step.contacts)), step.wait_s, tuple(step.channels)) for step in body.steps
    ]
    audit = principal.audit("escalation.update", "escalation", None, steps=policy_view_steps(steps))
    policy = await context.store.set_escalation_policy(principal.tenant_id, steps, audit=audit)
    return policy_view(policy if steps else None)

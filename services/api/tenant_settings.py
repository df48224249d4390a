"""/api/v1/tenant/settings: the tenant's retention periods and location visibility (CONTRACT §8)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from services.api.deps import AdminPrincipal, ContextDep, CurrentPrincipal
from shared.store.tenant_settings import TenantSettings

router = APIRouter(prefix="/api/v1/tenant", tags=["tenant"])

Visibility = Literal["always", "on_shift", "alerts_only"]
_TELEMETRY_DAYS = "days positions, heartbeats and activities are kept, by device time (1-3650)"
_ALERT_DAYS = "days a resolved alert is kept after it was resolved, with its timeline and notifications (30-3650)"
_VISIBILITY = "when positions are shown: always, on_shift (within shift hours and alerts), alerts_only"


def _whole_number(value: object) -> object:
    """A JSON number with no fraction: 30 or 30.0 (both JSON Schema integers), never true or "30"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number of days")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number of days")
    return int(value)


Days = Annotated[int, BeforeValidator(_whole_number)]


class TenantSettingsOut(BaseModel):
    telemetry_retention_days: int = Field(ge=1, le=3650, description=_TELEMETRY_DAYS)
    alert_retention_days: int = Field(ge=30, le=3650, description=_ALERT_DAYS)
    location_visibility: Visibility = Field(description=_VISIBILITY)


class TenantSettingsIn(BaseModel):
    """The settings to change; those left out keep their current value (a merge, not a replace:
    leaving out a retention period must never shorten it to the default and delete data)."""

    # No null: "unchanged" is said by leaving a field out, so the None defaults only mark a
    # field not given (model_fields_set), never a value a client may send.
    telemetry_retention_days: Days = Field(  # type: ignore[assignment]  # None: not given, see above
        None, ge=1, le=3650, description=_TELEMETRY_DAYS
    )
    alert_retention_days: Days = Field(  # type: ignore[assignment]  # None: not given, see above
        None, ge=30, le=3650, description=_ALERT_DAYS
    )
    location_visibility: Visibility = Field(None, description=_VISIBILITY)  # type: ignore[arg-type]  # not given
    model_config = ConfigDict(
        extra="forbid",
        # minProperties says in the schema what _something_to_change checks: an empty object is refused.
        json_schema_extra={
            "examples": [{"telemetry_retention_days": 30, "location_visibility": "alerts_only"}],
            "minProperties": 1,
        },
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> TenantSettingsIn:
        if not self.model_fields_set:
            raise ValueError("give at least one of telemetry_retention_days, alert_retention_days, location_visibility")
        return self


@router.get("/settings", response_model=TenantSettingsOut, summary="The tenant's retention and visibility settings")
async def get_settings(context: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return (await context.store.tenant_settings(principal.tenant_id)).as_dict()


@router.put(
    "/settings",
    response_model=TenantSettingsOut,
    summary="Change the tenant's retention and visibility settings (admin); fields left out are kept",
)
async def put_settings(body: TenantSettingsIn, context: ContextDep, principal: AdminPrincipal) -> dict[str, Any]:
    current = await context.store.tenant_settings(principal.tenant_id)
    changed: TenantSettings = replace(current, **body.model_dump(include=body.model_fields_set))
    audit = principal.audit("settings.update", "tenant", principal.tenant_id, **changed.as_dict())
    await context.store.set_tenant_settings(principal.tenant_id, changed, audit=audit)
    return changed.as_dict()

"""/api/v1/devices/{imei}/settings: one worker's detection overrides (offline delay, shift hours)."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.api.deps import AdminPrincipal, ContextDep, CurrentPrincipal
from services.api.devices import Imei, tenant_device
from services.authn.models import ErrorOut
from shared.store.device_settings import DeviceSettings

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


Hour = Annotated[float, Field(ge=0, le=24, strict=True)]  # strict: JSON's true is not an hour
# Distinct ends (uniqueItems) say in the schema what _within_a_day checks: a span of no length is refused.
Span = Annotated[tuple[Hour, Hour], Field(json_schema_extra={"uniqueItems": True})]


class Shift(BaseModel):
    hours: list[Span] = Field(
        min_length=1,
        max_length=6,
        description="local [start, end) hours, 0-24; an end before its start runs past midnight",
    )
    timezone: str = Field("UTC", description="IANA name, e.g. Europe/Paris")
    model_config = ConfigDict(extra="forbid")

    @field_validator("hours")
    @classmethod
    def _within_a_day(cls, hours: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for start, end in hours:
            if not (0 <= start <= 24 and 0 <= end <= 24) or start == end:
                raise ValueError(f"hours [{start}, {end}] are not a span within 0-24")
        return hours

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {name!r}") from None
        return name


class DeviceSettingsIn(BaseModel):
    offline_after: float | None = Field(
        None, ge=30, le=7 * 24 * 3600, strict=True, description="seconds of silence before offline; null: the default"
    )
    shift: Shift | None = Field(None, description="when no_motion counts; null: at any hour")
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"offline_after": 300, "shift": {"hours": [[22, 6]], "timezone": "Europe/Paris"}}]
        },
    )


class DeviceSettingsOut(BaseModel):
    offline_after: float | None
    shift: Shift | None


_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "no such device in the tenant"}}


@router.get(
    "/{imei}/settings", response_model=DeviceSettingsOut, responses=_NOT_FOUND, summary="A device's detection settings"
)
async def get_settings(imei: Imei, context: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    device = await tenant_device(context, principal.tenant_id, imei)
    return (await context.store.device_settings(device.id)).as_dict()


@router.put(
    "/{imei}/settings",
    response_model=DeviceSettingsOut,
    responses=_NOT_FOUND,
    summary="Replace a device's detection settings (admin)",
)
async def put_settings(
    imei: Imei, body: DeviceSettingsIn, context: ContextDep, principal: AdminPrincipal
) -> dict[str, Any]:
    device = await tenant_device(context, principal.tenant_id, imei)
    settings = DeviceSettings(
        offline_after=body.offline_after, shift=body.shift.model_dump(mode="json") if body.shift else None
    )
    audit = principal.audit("settings.update", "device", device.imei, **settings.as_dict())
    await context.store.set_device_settings(device.id, settings, audit=audit)
    return settings.as_dict()

"""/api/v1/devices: register and list insoles and their live state (their history: history.py)."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from services.api.deps import AdminPrincipal, ContextDep, CurrentPrincipal
from services.api.models import (
    IMEI_PATTERN,
    DeviceIn,
    DeviceOut,
    DevicePage,
    DeviceRegistered,
)
from services.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from services.authn.models import ErrorOut
from services.context import ServiceContext
from shared.alerts import iso_utc
from shared.online import online_key  # the mark the listener keeps while connected
from shared.store import Device, DeviceExists, hash_device_token

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

Imei = Annotated[str, Path(pattern=IMEI_PATTERN, description="the device's IMEI (10 to 15 digits by its protocol)")]


async def device_view(context: ServiceContext, device: Device, *, whole: bool = False) -> dict[str, Any]:
    """The device as the API shows it; `whole`: its last fix even where the location visibility hides it
    (only for the admin's export of the worker's data)."""
    return (await device_views(context, [device], whole=whole))[0]


async def device_views(context: ServiceContext, devices: list[Device], *, whole: bool = False) -> list[dict[str, Any]]:
    # last_position through the location visibility (CONTRACT §8): null when the tenant's mode hides it.
    last_positions = await context.positions.last_positions(devices, whole=whole)
    marks = await context.cache.get_many([online_key(device.id) for device in devices])
    return [
        {
            "imei": device.imei,
            "name": device.name,
            "protocol": device.protocol,
            "model": device.model,
            "created_at": iso_utc(device.created_at, millis=True),
            "enabled": device.enabled,
            "online": mark is not None and mark not in (b"", b"0"),
            "last_seen": iso_utc(device.last_seen),
            "battery": device.battery,
            "last_position": last_position,
        }
        for device, mark, last_position in zip(devices, marks, last_positions, strict=True)
    ]


async def tenant_device(context: ServiceContext, tenant_id: int, imei: str) -> Device:
    """The device, or 404 when it does not exist or belongs to another tenant (which we never reveal)."""
    device = await context.store.device_by_imei(imei)
    if device is None or device.tenant_id != tenant_id:
        raise HTTPException(404, "device not found")
    return device


@router.get("", response_model=DevicePage, summary="List the tenant's devices")
async def list_devices(
    context: ContextDep,
    principal: CurrentPrincipal,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    after_id = decode_cursor(cursor, 1)[0] if cursor else None
    devices = await context.store.devices(principal.tenant_id, after_id=after_id, limit=limit + 1)
    page = devices[:limit]
    items = await device_views(context, page)
    return {"items": items, "next_cursor": encode_cursor(page[-1].id) if len(devices) > limit else None}


@router.post(
    "",
    status_code=201,
    response_model=DeviceRegistered,
    summary="Register a device (admin)",
    description="An XSole insole gets its secret `token` in this answer only; a device of another protocol"
    " (CONTRACT §10) carries none, and the answer has no `token`.",
    # Without it a tracker's answer would carry `"token": null`; every other field is always set.
    response_model_exclude_unset=True,
    responses={
        409: {"model": ErrorOut, "description": "a device with this IMEI is already registered"},
        422: {"model": ErrorOut, "description": "an unknown protocol, or an IMEI its protocol cannot carry"},
    },
)
async def register_device(body: DeviceIn, context: ContextDep, principal: AdminPrincipal) -> dict[str, Any]:
    token = secrets.token_bytes(16) if body.protocol == "xsole" else None
    detail: dict[str, Any] = {"name": body.name}
    if body.protocol != "xsole":
        detail |= {"protocol": body.protocol, "model": body.model}
    try:
        device = await context.store.add_device(
            tenant_id=principal.tenant_id,
            imei=body.imei,
            name=body.name,
            token_hash=b"" if token is None else hash_device_token(token),
            protocol=body.protocol,
            model=body.model,
            audit=principal.audit("device.create", "device", None, **detail),
        )
    except DeviceExists:
        # IMEIs are unique across tenants; the answer must not say whose it is.
        raise HTTPException(409, "a device with this IMEI is already registered") from None
    view = await device_view(context, device)
    return view if token is None else view | {"token": token.hex()}


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such device in the caller's tenant"}
}


@router.get("/{imei}", response_model=DeviceOut, summary="One device with its live state", responses=_NOT_FOUND)
async def get_device(imei: Imei, context: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return await device_view(context, await tenant_device(context, principal.tenant_id, imei))

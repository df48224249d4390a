"""/api/v1/devices: register and list insoles, their live state and their positions."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BeforeValidator

from services.api.deps import AdminPrincipal, ContextDep, CurrentPrincipal
from services.api.models import (
    IMEI_PATTERN,
    DeviceIn,
    DeviceOut,
    DevicePage,
    DeviceRegistered,
    PositionPage,
)
from services.api.pagination import Cursor, Limit, PairCursor, decode_cursor, encode_cursor
from services.authn.models import ErrorOut
from services.context import ServiceContext
from shared.alerts import iso_utc
from shared.online import online_key  # the mark the listener keeps while connected
from shared.store import Device, DeviceExists, StoredPosition, hash_device_token

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

Imei = Annotated[str, Path(pattern=IMEI_PATTERN, description="the device's 15-digit IMEI")]


def _iso_8601(value: object) -> object:
    # pydantic would also read a bare number (1.5, 4e-291) as unix seconds; the spec says ISO-8601 date-time.
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("expected an ISO-8601 date-time, such as 2026-01-01T00:00:00Z")
    return value


Instant = Annotated[
    datetime | None, Query(description="ISO-8601; UTC when no offset is given"), BeforeValidator(_iso_8601)
]


async def device_view(context: ServiceContext, device: Device) -> dict[str, Any]:
    mark = await context.cache.get(online_key(device.id))
    last_position = None
    if device.last_fix_ts is not None and device.last_lat_e7 is not None and device.last_lon_e7 is not None:
        last_position = {
            "ts": iso_utc(device.last_fix_ts),
            "lat": device.last_lat_e7 / 1e7,
            "lon": device.last_lon_e7 / 1e7,
        }
    return {
        "imei": device.imei,
        "name": device.name,
        "created_at": iso_utc(device.created_at, millis=True),
        "enabled": device.enabled,
        "online": mark is not None and mark not in (b"", b"0"),
        "last_seen": iso_utc(device.last_seen),
        "battery": device.battery,
        "last_position": last_position,
    }


def position_view(row: StoredPosition) -> dict[str, Any]:
    """A stored position in the API's units (the store keeps the device's integers)."""
    return {
        "ts": iso_utc(row.ts),
        "lat": row.lat_e7 / 1e7,
        "lon": row.lon_e7 / 1e7,
        "alt": row.alt_m,
        "speed": row.speed_cms / 100,
        "course": row.course_ddeg / 10,
        "sats": row.sats,
        "hdop": row.hdop_d / 10,
        "battery": row.battery,
        "buffered": row.buffered,
    }


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
    items = await asyncio.gather(*(device_view(context, device) for device in page))
    return {"items": items, "next_cursor": encode_cursor(page[-1].id) if len(devices) > limit else None}


@router.post(
    "",
    status_code=201,
    response_model=DeviceRegistered,
    summary="Register a device (admin)",
    responses={409: {"model": ErrorOut, "description": "a device with this IMEI is already registered"}},
)
async def register_device(body: DeviceIn, context: ContextDep, principal: AdminPrincipal) -> dict[str, Any]:
    token = secrets.token_bytes(16)
    try:
        device = await context.store.add_device(
            tenant_id=principal.tenant_id,
            imei=body.imei,
            name=body.name,
            token_hash=hash_device_token(token),
            audit=principal.audit("device.create", "device", None, name=body.name),
        )
    except DeviceExists:
        # IMEIs are unique across tenants; the answer must not say whose it is.
        raise HTTPException(409, "a device with this IMEI is already registered") from None
    return await device_view(context, device) | {"token": token.hex()}


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such device in the caller's tenant"}
}


@router.get("/{imei}", response_model=DeviceOut, summary="One device with its live state", responses=_NOT_FOUND)
async def get_device(imei: Imei, context: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return await device_view(context, await tenant_device(context, principal.tenant_id, imei))


@router.get(
    "/{imei}/positions", response_model=PositionPage, summary="A device's positions, oldest first", responses=_NOT_FOUND
)
async def list_positions(
    imei: Imei,
    context: ContextDep,
    principal: CurrentPrincipal,
    since: Instant = None,
    until: Instant = None,
    limit: Limit = 100,
    cursor: PairCursor = None,
) -> dict[str, Any]:
    start, end = _unix(since, math.ceil), _unix(until, math.floor)
    after: tuple[int, int] | None = None
    if cursor:
        ts, seq = decode_cursor(cursor, 2)
        after = (ts, seq)
    device = await tenant_device(context, principal.tenant_id, imei)
    if start is not None and end is not None and start > end:
        return {"items": [], "next_cursor": None}  # an empty window, as valid a question as any other
    rows = await context.store.positions(device.id, since=start, until=end, after=after, limit=limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].ts, page[-1].seq) if len(rows) > limit else None
    return {"items": [position_view(row) for row in page], "next_cursor": next_cursor}


def _unix(instant: datetime | None, to_whole: Callable[[float], int]) -> int | None:
    # Positions carry whole seconds: round the bounds inwards so both stay inclusive.
    if instant is None:
        return None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return to_whole(instant.timestamp())

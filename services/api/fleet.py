"""/api/v1/devices/{imei}: an admin renames, disables, re-keys and retires a device (CONTRACT §5).

Each change is stored with its audit entry first, so a new LOGIN is checked
against it at once; then the listener holding the device is told to close its
link (`CommandSender.revoke_device`: directly in one process, over the bus in
the distributed mode), and the device's next LOGIN gets the answer its record
now calls for.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Response

from services.api.deps import AdminPrincipal, ContextDep
from services.api.devices import Imei, device_view, tenant_device
from services.api.fleet_models import DeviceToken, DeviceUpdate
from services.api.models import DeviceOut
from services.authn.models import ErrorOut
from services.context import ServiceContext
from shared.logging import get_logger
from shared.store import hash_device_token

log = get_logger("solewatch.api")

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such device in the caller's tenant"}
}


async def _revoke(context: ServiceContext, imei: str) -> None:
    # The change is stored: a LOGIN is refused whatever happens here. If the listener cannot be
    # told, its own check against the store closes the link within LOGIN_RECHECK_S (registry.py).
    try:
        await context.commands.revoke_device(imei)
    except Exception as exc:
        log.warning("device_revoke_not_announced", imei=imei, error=str(exc))


@router.patch(
    "/{imei}",
    response_model=DeviceOut,
    summary="Rename, disable or enable a device (admin)",
    description="Disabling closes the device's connection; its LOGIN gets status 3 until it is enabled again.",
    responses=_NOT_FOUND,
)
async def update_device(
    imei: Imei, body: DeviceUpdate, context: ContextDep, principal: AdminPrincipal
) -> dict[str, Any]:
    device = await tenant_device(context, principal.tenant_id, imei)
    changes = body.model_dump(exclude_none=True)
    audit = principal.audit("device.update", "device", imei, **changes) if changes else None
    updated = await context.store.update_device(device.id, name=body.name, enabled=body.enabled, audit=audit)
    if updated is None:
        raise HTTPException(404, "device not found")  # retired meanwhile
    if body.enabled is False:
        await _revoke(context, imei)
    return await device_view(context, updated)


@router.post(
    "/{imei}/token",
    response_model=DeviceToken,
    summary="Give a device a new secret (admin)",
    description="The old secret gets LOGIN_ACK status 2 from now on and an open connection is closed."
    " Only an XSole insole has a secret (CONTRACT §10).",
    responses={**_NOT_FOUND, 409: {"model": ErrorOut, "description": "a device of a protocol without a secret"}},
)
async def rotate_token(imei: Imei, context: ContextDep, principal: AdminPrincipal) -> dict[str, str]:
    device = await tenant_device(context, principal.tenant_id, imei)
    if device.protocol != "xsole":
        raise HTTPException(409, f"a {device.protocol} device carries no secret: there is no token to rotate")
    token = secrets.token_bytes(16)
    audit = principal.audit("device.token_rotate", "device", imei)
    if not await context.store.set_device_token(imei=imei, token_hash=hash_device_token(token), audit=audit):
        raise HTTPException(404, "device not found")
    await _revoke(context, imei)
    return {"token": token.hex()}


@router.delete(
    "/{imei}",
    status_code=204,
    response_class=Response,
    summary="Retire a device (admin)",
    description="The device is gone from every route, its connection is closed and its LOGIN gets status 1;"
    " its IMEI may be registered again as a new device. Its history stays (alerts keep listing) unless"
    " `erase=true`, which deletes everything stored about it.",
    responses=_NOT_FOUND,
)
async def retire_device(
    imei: Imei,
    context: ContextDep,
    principal: AdminPrincipal,
    erase: bool = Query(False, description="also delete its telemetry, alarms, alerts, timelines and commands"),
) -> Response:
    device = await tenant_device(context, principal.tenant_id, imei)
    audit = principal.audit("device.delete", "device", imei, erase=erase)
    if not await context.store.retire_device(device.id, erase=erase, audit=audit):
        raise HTTPException(404, "device not found")
    await _revoke(context, imei)
    return Response(status_code=204)

"""/api/v1/devices/{imei}/commands: downlink commands through the API (CONTRACT §5).

A command is queued through the process's CommandSender (the listener in one
process; the store and a bus wake-up in the distributed mode), with the audit
entry in the same write. Its status then follows the device: `sent` when a
listener wrote it to the device's link, `done`, `failed` or `unsupported` from
its COMMAND_RESULT, or `expired` when it was not sent within
SOLEWATCH_COMMAND_TTL (the store never hands it to a listener afterwards).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body

from services.api.deps import ContextDep, CurrentPrincipal, SupervisorPrincipal
from services.api.devices import Imei, tenant_device
from services.api.errors import invalid_field
from services.api.fleet_models import CommandIn, CommandOut, CommandPage
from services.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from services.authn.models import ErrorOut
from shared.alerts import iso_utc
from shared.protocols.xsole.command_args import command_args_problem, command_code
from shared.webhook_events import command_to_api

router = APIRouter(prefix="/api/v1/devices", tags=["commands"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such device in the caller's tenant"}
}


@router.post(
    "/{imei}/commands",
    status_code=202,
    response_model=CommandOut,
    summary="Send a device a command (supervisor)",
    description="Queued now, sent as soon as the device is connected, unless it is still unsent after"
    " SOLEWATCH_COMMAND_TTL seconds (then `expired`, never sent).",
    responses=_NOT_FOUND,
)
async def send_command(
    imei: Imei, body: Annotated[CommandIn, Body()], context: ContextDep, principal: SupervisorPrincipal
) -> dict[str, Any]:
    code, args = command_code(body.command), bytes.fromhex(body.args)
    problem = command_args_problem(code, args)  # the schema's patterns say the same: a second guard
    if problem is not None:
        raise invalid_field("body", body.command, "args", msg=problem)
    device = await tenant_device(context, principal.tenant_id, imei)
    audit = principal.audit("device.command", "device", imei, command=body.command, args=args.hex())
    command_id = await context.commands.send_command(device_id=device.id, cmd=code, args=args, audit=audit)
    stored = await context.store.command(command_id)
    # As queued, whatever a listener in this process did with it since: 202 says "accepted, not done".
    return {
        "id": command_id,
        "command": body.command,
        "args": args.hex(),
        "status": "queued",
        "created_at": iso_utc(stored.created_at if stored else time.time(), millis=True),
        "sent_at": None,
        "completed_at": None,
    }


@router.get(
    "/{imei}/commands",
    response_model=CommandPage,
    summary="A device's commands, newest first",
    responses=_NOT_FOUND,
)
async def list_commands(
    imei: Imei,
    context: ContextDep,
    principal: CurrentPrincipal,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    before_id = decode_cursor(cursor, 1)[0] if cursor else None
    device = await tenant_device(context, principal.tenant_id, imei)
    commands = await context.store.device_commands(device.id, before_id=before_id, limit=limit + 1)
    page, now = commands[:limit], time.time()
    return {
        "items": [command_to_api(command, now) for command in page],
        "next_cursor": encode_cursor(page[-1].id) if len(commands) > limit else None,
    }

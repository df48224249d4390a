"""/api/v1/audit: the tenant's audit log, newest first (admins; CONTRACT §5).

Read only: entries are written by the changes they record (and by the reads
of a worker's history), and no route changes or deletes one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.api.deps import AdminPrincipal, ContextDep
from services.api.errors import invalid_field
from services.api.history import Instant
from services.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from shared.alerts import iso_utc
from shared.store.audit import AuditRecord

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

ACTION_PATTERN = r"^[a-z][a-z_]*\.[a-z][a-z_]*$"


class ActorOut(BaseModel):
    type: Literal["user", "api_key", "contact", "system"]
    id: str | None = Field(description="the user's, key's or contact's id; null for solewatch itself")
    label: str = Field(description="an email, a key's name, a contact's name, or what part of solewatch")


class TargetOut(BaseModel):
    type: str = Field(description="what was changed or read: `alert`, `device`, `contact`, `geofence`...")
    id: str | None = Field(description="its id (a device's IMEI); null for a tenant-wide setting")


class AuditEntryOut(BaseModel):
    id: int
    at: str = Field(description="when, ISO-8601 UTC")
    actor: ActorOut
    action: str = Field(description="e.g. `alert.ack`, `geofence.create`, `positions.read`")
    target: TargetOut
    detail: dict[str, Any] = Field(description="what changed, or which range was read")
    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "id": 42,
                    "at": "2026-01-01T08:31:02.125Z",
                    "actor": {"type": "user", "id": "3", "label": "night@acme.example"},
                    "action": "alert.ack",
                    "target": {"type": "alert", "id": "17"},
                    "detail": {"via": "dashboard"},
                }
            ]
        }
    }


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page; null on the last page")


def audit_view(record: AuditRecord) -> dict[str, Any]:
    entry = record.entry
    return {
        "id": record.id,
        "at": iso_utc(record.at, millis=True),
        "actor": {"type": entry.actor.type, "id": entry.actor.id, "label": entry.actor.label},
        "action": entry.action,
        "target": {"type": entry.target_type, "id": entry.target_id},
        "detail": entry.detail,
    }


Action = Annotated[
    str | None,
    Query(pattern=ACTION_PATTERN, max_length=64, description="only entries of this action, e.g. `alert.ack`"),
]


@router.get(
    "",
    response_model=AuditPage,
    summary="The tenant's audit log, newest first (admin)",
    responses={422: {"description": "a malformed filter or cursor, or `since` after `until`"}},
)
async def list_audit(
    context: ContextDep,
    principal: AdminPrincipal,
    since: Instant = None,
    until: Instant = None,
    action: Action = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    start, end = _unix(since), _unix(until)
    if start is not None and end is not None and start > end:
        raise invalid_field("query", "since", msg="since is after until")
    before_id = decode_cursor(cursor, 1)[0] if cursor else None
    records = await context.store.audit_log(
        principal.tenant_id, since=start, until=end, action=action, before_id=before_id, limit=limit + 1
    )
    page = records[:limit]
    return {
        "items": [audit_view(record) for record in page],
        "next_cursor": encode_cursor(page[-1].id) if len(records) > limit else None,
    }


def _unix(instant: datetime | None) -> float | None:
    if instant is None:
        return None
    return (instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant).timestamp()

"""A worker's history (CONTRACT §2, §5): positions, activity and heartbeats, oldest first, paged alike.

All three read the frames the listener stored, by device time, with inclusive
`since`/`until` and a (time, seq) cursor. Positions come through the location
visibility (services/visibility, CONTRACT §8): those the tenant's mode hides
are left out, so a page may hold fewer than `limit` and still have a next.
Reading positions or activity leaves a `positions.read` entry in the audit
log, and a positions read made for an export (`export=csv|geojson`) an
`export.read` entry instead (read_trace.py: one entry per read, not per page).
Heartbeats (battery and signal) say how the insole is, not where the worker
was or what they did, and leave none.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, Field

from services.api.deps import ContextDep, CurrentPrincipal
from services.api.devices import Imei, tenant_device
from services.api.models import PositionPage
from services.api.pagination import Limit, PairCursor, decode_cursor, encode_cursor
from services.api.read_trace import record_read
from services.authn.models import ErrorOut
from shared.alerts import iso_utc
from shared.position_view import known_battery, position_view
from shared.protocols.xsole.constants import ActivityState
from shared.store.telemetry import StoredActivity, StoredHeartbeat, StoredPosition

router = APIRouter(prefix="/api/v1/devices", tags=["history"])

R = TypeVar("R", StoredPosition, StoredActivity, StoredHeartbeat)


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

ActivityStateName = Literal["unknown", "still", "walking", "running", "lying", "off_foot"]
_STATE_NAMES: dict[int, ActivityStateName] = {
    ActivityState.UNKNOWN: "unknown",
    ActivityState.STILL: "still",
    ActivityState.WALKING: "walking",
    ActivityState.RUNNING: "running",
    ActivityState.LYING: "lying",
    ActivityState.OFF_FOOT: "off_foot",
}


class ActivityOut(BaseModel):
    ts: str = Field(description="device time, ISO-8601 UTC")
    steps: int = Field(description="steps since the previous activity report")
    state: ActivityStateName = Field(description="what the insole judged the worker was doing")
    cadence: int = Field(description="steps per minute")
    battery: int | None = Field(description="%; null when the device did not say")
    model_config = {
        "json_schema_extra": {
            "examples": [{"ts": "2026-01-01T00:00:00Z", "steps": 120, "state": "walking", "cadence": 96, "battery": 87}]
        }
    }


class ActivityPage(BaseModel):
    items: list[ActivityOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class HeartbeatOut(BaseModel):
    ts: str = Field(description="device time, ISO-8601 UTC")
    battery: int | None = Field(description="%; null when the device did not say")
    rssi: int = Field(description="signal strength, dBm")
    model_config = {"json_schema_extra": {"examples": [{"ts": "2026-01-01T00:00:00Z", "battery": 87, "rssi": -71}]}}


class HeartbeatPage(BaseModel):
    items: list[HeartbeatOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such device in the caller's tenant"}
}


def activity_view(row: StoredActivity) -> dict[str, Any]:
    return {
        "ts": iso_utc(row.ts),
        "steps": row.steps,
        "state": _STATE_NAMES.get(row.state, "unknown"),  # a state newer firmware knows and we do not
        "cadence": row.cadence,
        "battery": known_battery(row.battery),
    }


def heartbeat_view(row: StoredHeartbeat) -> dict[str, Any]:
    return {"ts": iso_utc(row.ts), "battery": known_battery(row.battery), "rssi": row.rssi}


Reader = Callable[..., Awaitable[list[R]]]


async def _page(
    read: Reader[R],
    view: Callable[[R], dict[str, Any]],
    device_id: int,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """One page of a device's frames of one kind, with the cursor of the next."""
    start, end, after = _bounds(since, until, cursor)
    if start is not None and end is not None and start > end:
        return {"items": [], "next_cursor": None}  # an empty window, as valid a question as any other
    rows = await read(device_id, since=start, until=end, after=after, limit=limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].ts, page[-1].seq) if len(rows) > limit else None
    return {"items": [view(row) for row in page], "next_cursor": next_cursor}


def _bounds(
    since: datetime | None, until: datetime | None, cursor: str | None
) -> tuple[int | None, int | None, tuple[int, int] | None]:
    """The query's range in unix seconds and where the page starts."""
    after: tuple[int, int] | None = None
    if cursor:
        ts, seq = decode_cursor(cursor, 2)
        after = (ts, seq)
    return _unix(since, math.ceil), _unix(until, math.floor), after


def _unix(instant: datetime | None, to_whole: Callable[[float], int]) -> int | None:
    # Frames carry whole seconds: round the bounds inwards so both stay inclusive.
    if instant is None:
        return None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return to_whole(instant.timestamp())


ExportFormat = Annotated[
    Literal["csv", "geojson"] | None,
    Query(
        description="set when the positions are read to be exported (the dashboard's CSV and GeoJSON downloads):"
        " the read is then recorded in the audit log as `export.read` with this format, not `positions.read`"
    ),
]


@router.get(
    "/{imei}/positions",
    response_model=PositionPage,
    summary="A device's positions, oldest first (recorded in the audit log)",
    description="Only the positions the tenant's location visibility shows (`always`, `on_shift`, `alerts_only`):"
    " a page may hold fewer than `limit` items, even none, and still have a `next_cursor`; follow it until null.",
    responses=_NOT_FOUND,
)
async def list_positions(
    imei: Imei,
    context: ContextDep,
    principal: CurrentPrincipal,
    since: Instant = None,
    until: Instant = None,
    limit: Limit = 100,
    cursor: PairCursor = None,
    export: ExportFormat = None,
) -> dict[str, Any]:
    device = await tenant_device(context, principal.tenant_id, imei)
    start, end, after = _bounds(since, until, cursor)
    if start is not None and end is not None and start > end:
        page: dict[str, Any] = {"items": [], "next_cursor": None}
    else:
        # Through the location visibility (CONTRACT §8): positions the tenant's mode hides are left out.
        seen = await context.positions.page(device, since=start, until=end, after=after, limit=limit)
        next_cursor = encode_cursor(*seen.next_after) if seen.next_after else None
        page = {"items": [position_view(row) for row in seen.items], "next_cursor": next_cursor}
    action, detail = ("positions.read", {}) if export is None else ("export.read", {"format": export})
    await record_read(
        context,
        principal,
        device,
        action=action,
        since=since,
        until=until,
        cursor=cursor,
        next_cursor=page["next_cursor"],
        history="positions",
        **detail,
    )
    return page


@router.get(
    "/{imei}/activity",
    response_model=ActivityPage,
    summary="A device's activity reports, oldest first (recorded in the audit log)",
    responses=_NOT_FOUND,
)
async def list_activity(
    imei: Imei,
    context: ContextDep,
    principal: CurrentPrincipal,
    since: Instant = None,
    until: Instant = None,
    limit: Limit = 100,
    cursor: PairCursor = None,
) -> dict[str, Any]:
    device = await tenant_device(context, principal.tenant_id, imei)
    page = await _page(context.store.activities, activity_view, device.id, since, until, limit, cursor)
    await record_read(
        context,
        principal,
        device,
        action="positions.read",
        since=since,
        until=until,
        cursor=cursor,
        next_cursor=page["next_cursor"],
        history="activity",
    )
    return page


@router.get(
    "/{imei}/heartbeats",
    response_model=HeartbeatPage,
    summary="A device's heartbeats (battery and signal), oldest first",
    responses=_NOT_FOUND,
)
async def list_heartbeats(
    imei: Imei,
    context: ContextDep,
    principal: CurrentPrincipal,
    since: Instant = None,
    until: Instant = None,
    limit: Limit = 100,
    cursor: PairCursor = None,
) -> dict[str, Any]:
    device = await tenant_device(context, principal.tenant_id, imei)
    return await _page(context.store.heartbeats, heartbeat_view, device.id, since, until, limit, cursor)

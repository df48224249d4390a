"""GET /api/v1/devices/{imei}/trips (CONTRACT §9): a worker's trips and stops over a range.

The thresholds are the request's (shared/reports/track.py says what each means). The
positions come through the location visibility's gate (services/visibility): a tenant that
does not show every position gets the trips and stops of those it shows. Positions are read
a page at a time into the streaming segmenter, so memory holds a page whatever the range;
pages of the answer are by the item's start, each computed from `since` again. The read is
audited as `positions.read` (`history` `trips`): trips say where a worker went.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.api.csv_cells import csv_text
from services.api.deps import ContextDep, CurrentPrincipal
from services.api.devices import Imei, tenant_device
from services.api.history import Instant
from services.api.pagination import Limit, PairCursor, decode_cursor, encode_cursor
from services.api.read_trace import record_read
from services.api.reports import CSV_ANSWER, NOT_FOUND, csv_answer, whole_seconds
from services.api.reports_alerts import ReportFormat, report_range
from services.context import ServiceContext
from shared.alerts import iso_utc
from shared.reports.track import (
    DEFAULT_MIN_STOP_S,
    DEFAULT_MIN_TRIP_M,
    DEFAULT_STOP_RADIUS_M,
    Fix,
    Segment,
    Segmenter,
    Thresholds,
    fixes,
)
from shared.store import Device

router = APIRouter(tags=["reports"])

TRIP_COLUMNS = (
    "type",
    "start",
    "end",
    "start_lat",
    "start_lon",
    "end_lat",
    "end_lon",
    "distance_m",
    "duration_s",
)
POSITIONS_PAGE = 1000


class Place(BaseModel):
    lat: float
    lon: float


class TripOrStop(BaseModel):
    type: str = Field(description="`trip` or `stop`")
    start: str
    end: str
    start_position: Place
    end_position: Place
    distance_m: float
    duration_s: int


class TripThresholds(BaseModel):
    min_stop_s: int
    min_trip_m: float
    stop_radius_m: float


class TripsReport(BaseModel):
    items: list[TripOrStop]
    next_cursor: str | None
    thresholds: TripThresholds


def _place(fix: Fix) -> dict[str, float]:
    return {"lat": round(fix.lat, 7), "lon": round(fix.lon, 7)}


def _segment_view(segment: Segment) -> dict[str, Any]:
    return {
        "type": segment.type,
        "start": iso_utc(segment.start.ts),
        "end": iso_utc(segment.end.ts),
        "start_position": _place(segment.start),
        "end_position": _place(segment.end),
        "distance_m": round(segment.distance_m, 1),
        "duration_s": segment.duration_s,
    }


async def _visible_fixes(context: ServiceContext, device: Device, *, since: int, until: int) -> AsyncIterator[Fix]:
    """The device's valid fixes in [since, until) that the tenant's visibility shows, a page at a time."""
    after = None
    while True:
        page = await context.positions.page(device, since=since, until=until - 1, after=after, limit=POSITIONS_PAGE)
        for fix in fixes(page.items):
            yield fix
        if page.next_after is None:
            return
        after = page.next_after


@router.get(
    "/api/v1/devices/{imei}/trips",
    response_model=TripsReport,
    summary="A worker's trips and stops over a range (recorded in the audit log)",
    description="A stop: the worker stayed within `stop_radius_m` of one place for at least `min_stop_s`;"
    " a trip: the way between two stops, at least `min_trip_m` long (shorter moves join the stops around them)."
    " Computed from the positions the tenant's location visibility shows (docs/reports.md).",
    responses={**CSV_ANSWER, **NOT_FOUND},
)
async def trips_report(
    imei: Imei,
    context: ContextDep,
    principal: CurrentPrincipal,
    since: Instant,
    until: Instant,
    min_stop_s: Annotated[int, Query(ge=30, le=86_400, description="shortest stay that is a stop")] = (
        DEFAULT_MIN_STOP_S
    ),
    min_trip_m: Annotated[float, Query(ge=0, le=100_000, description="shortest way that is a trip")] = (
        DEFAULT_MIN_TRIP_M
    ),
    stop_radius_m: Annotated[float, Query(ge=10, le=1000, description="how far a stay may wander")] = (
        DEFAULT_STOP_RADIUS_M
    ),
    limit: Limit = 100,
    cursor: PairCursor = None,
    format: ReportFormat = "json",
) -> Any:
    start, end = whole_seconds(*report_range(since, until))
    device = await tenant_device(context, principal.tenant_id, imei)
    thresholds = Thresholds(min_stop_s=min_stop_s, min_trip_m=min_trip_m, stop_radius_m=stop_radius_m)
    after = decode_cursor(cursor, 2) if cursor else None
    wanted = None if format == "csv" else limit + 1
    found: list[Segment] = []
    async for segment in _segments(context, device, start, end, thresholds):
        if after is None or segment.start.key >= after:
            found.append(segment)
            if wanted is not None and len(found) == wanted:
                break
    next_cursor = None
    if wanted is not None and len(found) == wanted:
        next_cursor = encode_cursor(*found[-1].start.key)
        found = found[:limit]
    await record_read(
        context,
        principal,
        device,
        action="positions.read",
        since=since,
        until=until,
        cursor=cursor,
        next_cursor=next_cursor,
        history="trips",
    )
    if format == "csv":
        rows = [_trip_row(segment) for segment in found]
        return csv_answer(csv_text(rows, TRIP_COLUMNS), f"trips-{device.imei}", start, end)
    return {
        "items": [_segment_view(segment) for segment in found],
        "next_cursor": next_cursor,
        "thresholds": {"min_stop_s": min_stop_s, "min_trip_m": min_trip_m, "stop_radius_m": stop_radius_m},
    }


async def _segments(
    context: ServiceContext, device: Device, since: int, until: int, thresholds: Thresholds
) -> AsyncIterator[Segment]:
    """The trips and stops of fixes read a page at a time: memory holds a page, whatever the range."""
    segmenter = Segmenter(thresholds)
    async for fix in _visible_fixes(context, device, since=since, until=until):
        for segment in segmenter.add(fix):
            yield segment
    for segment in segmenter.finish():
        yield segment


def _trip_row(segment: Segment) -> dict[str, Any]:
    view = _segment_view(segment)
    start, end = view.pop("start_position"), view.pop("end_position")
    return {**view, "start_lat": start["lat"], "start_lon": start["lon"], "end_lat": end["lat"], "end_lon": end["lon"]}

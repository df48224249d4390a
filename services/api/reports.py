"""GET /api/v1/reports/workers and GET /api/v1/reports/activity (CONTRACT §9): per worker.

- **Workers**: per device over [since, until): distance, online time, time per activity
  state, steps (report_figures.py, shared/reports/totals.py), alerts by kind and time to
  acknowledge (shared/reports/response_times.py; an alert belongs to the range by `ts`).
- **Activity**: the same figures but alerts, per day of a time zone (what the dashboard
  charts), in one read.

Both page by device id (`limit`, `cursor`); `format=csv` answers every device at once. A
tenant that does not show every position (CONTRACT §8) gets `distance_m: null`, a figure
made from where the worker was. Every read is audited (`report.read`) before the answer goes.
Trips are in report_trips.py.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.api.csv_cells import csv_text
from services.api.deps import ContextDep, CurrentPrincipal
from services.api.devices import tenant_device
from services.api.errors import invalid_field
from services.api.history import Instant
from services.api.pagination import MAX_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from services.api.report_figures import local_days, worker_totals, worker_totals_by_piece
from services.api.reports_alerts import AckSummary, ReportFormat, report_range
from services.authn.deps import Principal
from services.authn.models import ErrorOut
from services.context import ServiceContext
from shared.alerts import iso_utc
from shared.reports.response_times import summary, time_to_ack_s
from shared.reports.totals import Totals
from shared.store import Device

router = APIRouter(tags=["reports"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "no such device in the tenant"}}
CSV_ANSWER: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}
_STATE_FIELDS = ("walking_s", "running_s", "still_s", "lying_s", "off_foot_s")
WORKER_COLUMNS = (
    "imei",
    "name",
    "distance_m",
    "online_s",
    *_STATE_FIELDS,
    "steps",
    "alerts",
    "ack_median_s",
    "ack_p90_s",
    "ack_max_s",
)


class ActivityFigures(BaseModel):
    """What a worker did over a range or a day (docs/reports.md says how each is counted)."""

    distance_m: float | None = Field(
        description="metres between valid fixes, a standing worker's GPS jitter left out (docs/reports.md);"
        " null when the tenant's location visibility is not `always`"
    )
    online_s: int = Field(description="seconds the device was connected and reporting")
    walking_s: int
    running_s: int
    still_s: int
    lying_s: int
    off_foot_s: int
    steps: int


class WorkerFigures(ActivityFigures):
    imei: str
    name: str
    alerts: dict[str, int] = Field(description="alerts raised in the range, by kind")
    time_to_ack_s: AckSummary


class WorkersReport(BaseModel):
    since: str
    until: str
    location_visible: bool = Field(description="false: the tenant's location visibility hides distances")
    items: list[WorkerFigures]
    next_cursor: str | None


def whole_seconds(since: float, until: float) -> tuple[int, int]:
    """Frames carry whole seconds: [since, until) to whole seconds, the same frames."""
    return math.ceil(since), math.ceil(until)


def _figures(
    device: Device, found: Totals, alerts: Counter[str], acks: list[float], *, show_distance: bool
) -> dict[str, Any]:
    return {
        "imei": device.imei,
        "name": device.name,
        **_activity_figures(found, show_distance=show_distance),
        "alerts": dict(sorted(alerts.items())),
        "time_to_ack_s": summary(acks),
    }


def _activity_figures(found: Totals, *, show_distance: bool) -> dict[str, Any]:
    return {
        "distance_m": round(found.distance_m, 1) if show_distance else None,
        "online_s": round(found.online_s),
        **{name: round(getattr(found, name)) for name in _STATE_FIELDS},
        "steps": found.steps,
    }


async def _workers(
    context: ServiceContext, tenant_id: int, devices: list[Device], *, since: int, until: int, show_distance: bool
) -> list[dict[str, Any]]:
    found = await worker_totals(
        context.store, [d.id for d in devices], since=since, until=until, gap_s=context.settings.offline_after
    )
    alerts: dict[int, Counter[str]] = {d.id: Counter() for d in devices}
    acks: dict[int, list[float]] = {d.id: [] for d in devices}
    for alert in await context.store.alerts_raised(tenant_id, since=since, until=until):
        if alert.device_id in alerts:
            alerts[alert.device_id][alert.kind] += 1
            took = time_to_ack_s(alert)
            if took is not None:
                acks[alert.device_id].append(took)
    return [_figures(d, found[d.id], alerts[d.id], acks[d.id], show_distance=show_distance) for d in devices]


def _csv_row(figures: dict[str, Any]) -> dict[str, Any]:
    ack = figures["time_to_ack_s"]
    alerts = " ".join(f"{kind}:{n}" for kind, n in figures["alerts"].items())
    return {
        **figures,
        "alerts": alerts,
        "ack_median_s": ack["median"],
        "ack_p90_s": ack["p90"],
        "ack_max_s": ack["max"],
    }


def _json(body: dict[str, Any]) -> Response:
    """The report as JSON, encoded once. Its shape is the route's response model (the OpenAPI
    spec's); validating a thousand workers' month of days against it again took more memory
    than the report itself (tests/integration/test_reports_api.py holds the shape)."""
    return Response(orjson.dumps(body), media_type="application/json")


def csv_answer(body: str, name: str, since: int, until: int) -> Response:
    day = time.strftime  # the range's first and last day, in UTC
    filename = f"solewatch-{name}-{day('%Y%m%d', time.gmtime(since))}-{day('%Y%m%d', time.gmtime(until))}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/api/v1/reports/workers",
    response_model=WorkersReport,
    summary="Per worker over a range: distance, online time, activity, steps, alerts, time to acknowledge",
    description="Devices page by id (`limit`, `cursor`); `format=csv` answers every device (or the one `imei`)"
    " at once. Recorded in the audit log (`report.read`).",
    responses={**CSV_ANSWER, **NOT_FOUND},
)
async def workers_report(
    context: ContextDep,
    principal: CurrentPrincipal,
    since: Instant,
    until: Instant,
    imei: Annotated[str | None, Query(pattern=r"^\d{10,15}$", description="one device only")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
    format: ReportFormat = "json",
) -> Any:
    start, end = whole_seconds(*report_range(since, until))

    async def figures(devices: list[Device], show_distance: bool) -> list[dict[str, Any]]:
        return await _workers(
            context, principal.tenant_id, devices, since=start, until=end, show_distance=show_distance
        )

    return await _per_worker(
        context,
        principal,
        PerWorker("workers", start, end, imei, format, {}),
        figures,
        lambda item: [_csv_row(item)],
        WORKER_COLUMNS,
        limit=limit,
        cursor=cursor,
    )


@dataclass(frozen=True, slots=True)
class PerWorker:
    """A per-worker report's request: which report, its range, one worker or all, its format, and what
    else its answer and its audit entry say (the activity report's `tz`)."""

    report: str
    since: int
    until: int
    imei: str | None
    format: str
    also: dict[str, Any]


async def _per_worker(
    context: ServiceContext,
    principal: Principal,
    request: PerWorker,
    figures: Callable[[list[Device], bool], Awaitable[list[dict[str, Any]]]],
    csv_rows: Callable[[dict[str, Any]], list[dict[str, Any]]],
    columns: Sequence[str],
    *,
    limit: int,
    cursor: str | None,
) -> Response:
    """What the per-worker reports share: the audit entry, written first; the devices paged by id, or
    every device at once as CSV; `figures` makes the items of a page of devices."""
    tenant_id = principal.tenant_id
    show_distance = await context.positions.mode(tenant_id) == "always"
    one = await tenant_device(context, tenant_id, request.imei) if request.imei is not None else None
    since, until = iso_utc(request.since), iso_utc(request.until)
    detail = {"report": request.report, "since": since, "until": until, **request.also, "format": request.format}
    if request.imei:
        detail["imei"] = request.imei
    await context.store.record_audit(principal.audit("report.read", "report", request.report, **detail))
    if request.format == "csv":
        rows: list[dict[str, Any]] = []
        after_id = None
        while devices := await _devices(context, tenant_id, one, after_id=after_id, limit=MAX_LIMIT):
            rows += [row for item in await figures(devices, show_distance) for row in csv_rows(item)]
            after_id = devices[-1].id
        return csv_answer(csv_text(rows, columns), request.report, request.since, request.until)
    devices = await _devices(
        context, tenant_id, one, after_id=decode_cursor(cursor, 1)[0] if cursor else None, limit=limit + 1
    )
    more = len(devices) > limit
    devices = devices[:limit]
    return _json(
        {
            "since": since,
            "until": until,
            **request.also,
            "location_visible": show_distance,
            "items": await figures(devices, show_distance),
            "next_cursor": encode_cursor(devices[-1].id) if more else None,
        }
    )


async def _devices(
    context: ServiceContext, tenant_id: int, one: Device | None, *, after_id: int | None, limit: int
) -> list[Device]:
    """A page of the tenant's devices by id after `after_id`; of `one` only, if given."""
    if one is not None:
        return [one] if after_id is None or one.id > after_id else []
    return await context.store.devices(tenant_id, after_id=after_id, limit=limit)


# -- activity per day ----------------------------------------------------------------------------


class DayFigures(ActivityFigures):
    date: str = Field(description="the day in `tz`, YYYY-MM-DD")


class WorkerDays(BaseModel):
    imei: str
    name: str
    days: list[DayFigures] = Field(description="every day of the range, oldest first, the edges cut to it")


class ActivityReport(BaseModel):
    since: str
    until: str
    tz: str
    location_visible: bool
    items: list[WorkerDays]
    next_cursor: str | None


DEVICE_TIME_END = 2**32  # a frame's ts is unsigned 32-bit seconds (CONTRACT §1)
DAY_COLUMNS = ("imei", "name", "date", "distance_m", "online_s", *_STATE_FIELDS, "steps")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid_field("query", "tz", msg="an IANA time zone, such as Europe/Paris or UTC") from None


async def _days(
    context: ServiceContext, devices: list[Device], days: list[tuple[str, int, int]], *, show_distance: bool
) -> list[dict[str, Any]]:
    per_day = await worker_totals_by_piece(
        context.store, [d.id for d in devices], [(lo, hi) for _, lo, hi in days], gap_s=context.settings.offline_after
    )
    return [
        {
            "imei": device.imei,
            "name": device.name,
            "days": [
                {"date": date, **_activity_figures(found[device.id], show_distance=show_distance)}
                for (date, _, _), found in zip(days, per_day, strict=True)
            ],
        }
        for device in devices
    ]


@router.get(
    "/api/v1/reports/activity",
    response_model=ActivityReport,
    summary="Per worker and day (in a time zone): distance, online time, time per activity state, steps",
    description="The workers report's activity figures for each day of `tz` the range touches (what the"
    " dashboard charts), in one read. Devices page by id; `format=csv` answers every device, a row per day."
    " Recorded in the audit log (`report.read`, report `activity`).",
    responses={**CSV_ANSWER, **NOT_FOUND},
)
async def activity_report(
    context: ContextDep,
    principal: CurrentPrincipal,
    since: Instant,
    until: Instant,
    tz: Annotated[str, Query(max_length=64, description="IANA time zone whose days split the range")] = "UTC",
    imei: Annotated[str | None, Query(pattern=r"^\d{10,15}$", description="one device only")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
    format: ReportFormat = "json",
) -> Any:
    start, end = whole_seconds(*report_range(since, until))
    if start < 0 or end > DEVICE_TIME_END:  # days there have no frame, and some no date in every zone
        raise invalid_field("query", "since" if start < 0 else "until", msg="device times run from 1970 to 2106")
    days = local_days(start, end, _zone(tz))

    async def figures(devices: list[Device], show_distance: bool) -> list[dict[str, Any]]:
        return await _days(context, devices, days, show_distance=show_distance)

    def csv_rows(worker: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"imei": worker["imei"], "name": worker["name"], **day} for day in worker["days"]]

    return await _per_worker(
        context,
        principal,
        PerWorker("activity", start, end, imei, format, {"tz": tz}),
        figures,
        csv_rows,
        DAY_COLUMNS,
        limit=limit,
        cursor=cursor,
    )

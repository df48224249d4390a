"""GET /api/v1/reports/alerts (CONTRACT §9): the tenant's alerts over a range, in figures.

Counts by kind and status, time to acknowledge (median, p90, max),
escalations, and the alerts acknowledged more than five minutes after they
were raised; as JSON or, with `format=csv`, one row per kind and a row `all`
(the figures come from shared/reports/response_times.py, docs/reports.md).
An alert belongs to the range by when it happened (`ts`): [since, until).

Every read writes one `report.read` audit entry before the answer goes, so a
report the store cannot record fails (503) instead of going unlogged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.api.csv_cells import csv_text
from services.api.deps import ContextDep, CurrentPrincipal
from services.api.errors import invalid_field
from services.api.history import Instant
from shared.reports.response_times import CSV_COLUMNS, alerts_report, alerts_report_rows, is_slow

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

MAX_RANGE_S = 366 * 86400  # a year, leap day included: the longest range one report covers

ReportFormat = Annotated[
    Literal["json", "csv"], Query(description="`csv`: a `text/csv` attachment, one row per kind and a row `all`")
]


class StatusCounts(BaseModel):
    open: int
    acknowledged: int
    resolved: int


class KindCounts(StatusCounts):
    total: int


class AckSummary(BaseModel):
    median: float | None = Field(description="seconds, to 0.1 s; null without any acknowledged alert")
    p90: float | None = Field(description="seconds, nearest-rank 90th percentile")
    max: float | None


class SlowAck(BaseModel):
    id: int
    imei: str
    name: str | None = Field(description="the worker's device name; null once the device is retired")
    kind: str
    ts: str = Field(description="when it happened (device time)")
    raised_at: str = Field(description="when the server stored it; time to acknowledge counts from here")
    acknowledged_at: str
    acknowledged_by: str | None
    time_to_ack_s: float


class AlertsReport(BaseModel):
    since: str
    until: str
    total: int
    by_kind: dict[str, KindCounts] = Field(description="every kind that occurred in the range")
    by_status: StatusCounts
    time_to_ack_s: AckSummary
    acknowledged: int = Field(description="alerts acknowledged (resolved ones included)")
    unacknowledged: int = Field(description="alerts never acknowledged: still open, or resolved without")
    escalations: int = Field(description="escalation steps taken for these alerts")
    escalated_alerts: int = Field(description="alerts that escalated at least once")
    slow_threshold_s: int
    slow: list[SlowAck] = Field(description="acknowledged after more than slow_threshold_s, slowest first")


def report_range(since: datetime | None, until: datetime | None) -> tuple[float, float]:
    """The range in unix seconds, or a 422 naming what is wrong with it."""
    # Both are required by the route's signature, so FastAPI refuses a missing one first; `Instant`
    # is shared with the history routes, where both may be left out, hence the Optional here.
    if since is None or until is None:
        raise invalid_field("query", "since" if since is None else "until", msg="Field required", type="missing")
    start, end = _unix(since), _unix(until)
    if end <= start:
        raise invalid_field("query", "until", msg="until must be after since")
    if end - start > MAX_RANGE_S:
        raise invalid_field("query", "until", msg="a report covers at most 366 days")
    return start, end


def _unix(instant: datetime) -> float:
    return (instant if instant.tzinfo else instant.replace(tzinfo=UTC)).timestamp()


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%d")


@router.get(
    "/alerts",
    response_model=AlertsReport,
    summary="Alert counts, time to acknowledge and slow acknowledgements over a range (JSON or CSV)",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def alerts_report_route(
    context: ContextDep,
    principal: CurrentPrincipal,
    since: Instant,
    until: Instant,
    format: ReportFormat = "json",
) -> Any:
    start, end = report_range(since, until)
    alerts = await context.store.alerts_raised(principal.tenant_id, since=start, until=end)
    escalations = await context.store.alert_escalations([alert.id for alert in alerts])
    entry = principal.audit(
        "report.read", "report", "alerts", report="alerts", since=_iso(start), until=_iso(end), format=format
    )
    await context.store.record_audit(entry)
    if format == "csv":
        body = csv_text(alerts_report_rows(alerts, escalations), CSV_COLUMNS)
        filename = f"solewatch-alerts-{_day(start)}-{_day(end)}.csv"
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    # Names only for the devices the slow list shows (retired ones are gone: null).
    device_ids = sorted({alert.device_id for alert in alerts if is_slow(alert)})
    names = {device.id: device.name for device in await context.store.devices_by_ids(device_ids)}
    report: dict[str, Any] = alerts_report(alerts, escalations, names, since=start, until=end)
    return report


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")

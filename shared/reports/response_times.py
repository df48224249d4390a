"""The alerts report's figures (CONTRACT §9): counts, time to acknowledge, the slow ones. No I/O.

Time to acknowledge is measured between two server clocks, when the alert
was stored (`created_at`) and when someone acknowledged it (`acknowledged_at`),
so a device whose clock is off does not skew it. An alert resolved without
ever being acknowledged has no time to acknowledge and counts as
unacknowledged.

Percentiles use the nearest-rank method: the p-th percentile of n sorted
values is the value at rank ceil(p/100 * n) (1-based). It is always one of
the measured times, never an interpolation between two, which is what a
safety manager can check against the list. The median is the usual one
(the mean of the two middle values when n is even).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.alerts.serialize import iso_utc
from shared.store.alerts import Alert

# CONTRACT §9: "the alerts acknowledged more than 5 minutes after they were raised".
SLOW_ACK_S = 300
STATUSES = ("open", "acknowledged", "resolved")
# The CSV's columns: one row per kind that occurred, then `all` (the JSON's figures).
CSV_COLUMNS = (
    "kind",
    "total",
    "open",
    "acknowledged",
    "resolved",
    "ack_median_s",
    "ack_p90_s",
    "ack_max_s",
    "slow",
    "escalations",
)


def time_to_ack_s(alert: Alert) -> float | None:
    """Seconds from storing the alert to its acknowledgement; None when never acknowledged."""
    if alert.acknowledged_at is None:
        return None
    return alert.acknowledged_at - alert.created_at


def nearest_rank(sorted_values: Sequence[float], percent: float) -> float:
    """The `percent`-th percentile of ascending values by the nearest-rank method (module docstring)."""
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summary(seconds: Iterable[float]) -> dict[str, float | None]:
    """Median, p90 (nearest rank) and max, to 0.1 s; all None for no values."""
    values = sorted(seconds)
    if not values:
        return {"median": None, "p90": None, "max": None}
    return {
        "median": round(statistics.median(values), 1),
        "p90": round(nearest_rank(values, 90), 1),
        "max": round(values[-1], 1),
    }


def is_slow(alert: Alert) -> bool:
    """Acknowledged more than SLOW_ACK_S after it was raised."""
    waited = time_to_ack_s(alert)
    return waited is not None and waited > SLOW_ACK_S


def _slow_line(alert: Alert, names: Mapping[int, str]) -> dict[str, Any]:
    waited = time_to_ack_s(alert)
    assert waited is not None, "only acknowledged alerts are slow"
    return {
        "id": alert.id,
        "imei": alert.imei,
        "name": names.get(alert.device_id),
        "kind": alert.kind,
        "ts": iso_utc(alert.ts),
        "raised_at": iso_utc(alert.created_at, millis=True),
        "acknowledged_at": iso_utc(alert.acknowledged_at, millis=True),
        "acknowledged_by": alert.acknowledged_by,
        "time_to_ack_s": round(waited, 1),
    }


def slowest(
    alerts: Iterable[Alert], names: Mapping[int, str], *, over_s: float | None = SLOW_ACK_S, limit: int | None = None
) -> list[dict[str, Any]]:
    """The alerts acknowledged after more than `over_s` (None: every acknowledged one), slowest
    first (then by id), at most `limit` of them."""

    def waited(alert: Alert) -> float:
        return time_to_ack_s(alert) or 0.0

    acknowledged = (a for a in alerts if a.acknowledged_at is not None)
    chosen = sorted((a for a in acknowledged if over_s is None or waited(a) > over_s), key=lambda a: (-waited(a), a.id))
    return [_slow_line(alert, names) for alert in chosen[:limit]]


def _counts(alerts: Sequence[Alert]) -> dict[str, int]:
    counts = {"total": len(alerts)} | dict.fromkeys(STATUSES, 0)
    for alert in alerts:
        counts[alert.status] += 1
    return counts


def _by_kind(alerts: Iterable[Alert]) -> dict[str, list[Alert]]:
    """The alerts grouped by kind, kinds in alphabetical order (only kinds that occurred)."""
    grouped: dict[str, list[Alert]] = {}
    for alert in alerts:
        grouped.setdefault(alert.kind, []).append(alert)
    return dict(sorted(grouped.items()))


def alerts_report(
    alerts: Sequence[Alert], escalations: Mapping[int, int], names: Mapping[int, str], *, since: float, until: float
) -> dict[str, Any]:
    """The alerts report's JSON (docs/reports.md) for the alerts raised in [since, until).

    `escalations` is the store's `alert_escalations` of these alerts; `names`
    the device names by device id (a retired device's is missing: null).
    """
    waits = [w for w in map(time_to_ack_s, alerts) if w is not None]
    counts = _counts(alerts)
    return {
        "since": iso_utc(since),
        "until": iso_utc(until),
        "total": len(alerts),
        "by_kind": {kind: _counts(of_kind) for kind, of_kind in _by_kind(alerts).items()},
        "by_status": {status: counts[status] for status in STATUSES},
        "time_to_ack_s": summary(waits),
        "acknowledged": len(waits),
        "unacknowledged": len(alerts) - len(waits),
        "escalations": sum(escalations.get(a.id, 0) for a in alerts),
        "escalated_alerts": sum(1 for a in alerts if escalations.get(a.id, 0) > 0),
        "slow_threshold_s": SLOW_ACK_S,
        "slow": slowest(alerts, names),
    }


def _row(kind: str, alerts: Sequence[Alert], escalations: Mapping[int, int]) -> dict[str, Any]:
    ack = summary(w for w in map(time_to_ack_s, alerts) if w is not None)
    return {
        "kind": kind,
        **_counts(alerts),
        "ack_median_s": ack["median"],
        "ack_p90_s": ack["p90"],
        "ack_max_s": ack["max"],
        "slow": sum(1 for a in alerts if is_slow(a)),
        "escalations": sum(escalations.get(a.id, 0) for a in alerts),
    }


def alerts_report_rows(alerts: Sequence[Alert], escalations: Mapping[int, int]) -> list[dict[str, Any]]:
    """The CSV's rows (CSV_COLUMNS): one per kind that occurred, then `all` with the JSON's figures."""
    rows = [_row(kind, of_kind, escalations) for kind, of_kind in _by_kind(alerts).items()]
    return [*rows, _row("all", alerts, escalations)]

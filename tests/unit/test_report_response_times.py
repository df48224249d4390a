"""The alerts report's figures (shared/reports/response_times.py) on known alerts with known answers."""

from __future__ import annotations

from dataclasses import replace

from shared.reports.response_times import (
    CSV_COLUMNS,
    SLOW_ACK_S,
    alerts_report,
    alerts_report_rows,
    nearest_rank,
    summary,
    time_to_ack_s,
)
from shared.store.alerts import Alert

T0 = 1_772_323_200  # 2026-03-01T00:00:00Z
RAISED = T0 + 3600.0


def alert(
    id_: int, kind: str = "sos", *, ack_after: float | None = None, resolved: bool = False, device_id: int = 1
) -> Alert:
    """An alert stored at RAISED + id_ seconds, acknowledged `ack_after` seconds later if given."""
    created = RAISED + id_
    acknowledged_at = None if ack_after is None else created + ack_after
    status = "resolved" if resolved else ("acknowledged" if ack_after is not None else "open")
    return Alert(
        id=id_,
        tenant_id=1,
        device_id=device_id,
        imei=f"35630704244{device_id:04d}",
        kind=kind,
        ts=int(created) - 2,  # the device's clock, a little behind: not what time to acknowledge uses
        lat=None,
        lon=None,
        battery=None,
        status=status,
        created_at=created,
        acknowledged_at=acknowledged_at,
        acknowledged_by=None if ack_after is None else "sam@example.com",
        resolved_at=created + 5000 if resolved else None,
        resolved_by="sam@example.com" if resolved else None,
    )


def test_time_to_ack_is_between_the_server_clocks() -> None:
    assert time_to_ack_s(alert(1, ack_after=41.5)) == 41.5
    assert time_to_ack_s(alert(1)) is None
    assert time_to_ack_s(alert(1, resolved=True)) is None  # resolved without an acknowledgement


def test_nearest_rank_percentiles() -> None:
    one_to_ten = [float(v) for v in range(1, 11)]
    assert nearest_rank(one_to_ten, 90) == 9.0  # rank ceil(9.0) = 9
    assert nearest_rank([float(v) for v in range(1, 12)], 90) == 10.0  # rank ceil(9.9) = 10
    assert nearest_rank([float(v) for v in range(1, 21)], 90) == 18.0
    assert nearest_rank([7.0], 90) == 7.0
    assert nearest_rank([1.0, 2.0], 90) == 2.0
    assert nearest_rank(one_to_ten, 0) == 1.0


def test_summary_median_p90_max_to_a_tenth() -> None:
    assert summary([]) == {"median": None, "p90": None, "max": None}
    assert summary([12.34]) == {"median": 12.3, "p90": 12.3, "max": 12.3}
    # Unsorted input; an even count's median is the mean of the two middle values.
    assert summary([10.0, 2.0, 8.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0, 9.0]) == {"median": 5.5, "p90": 9.0, "max": 10.0}
    assert summary([41.04, 912.46, 380.21]) == {"median": 380.2, "p90": 912.5, "max": 912.5}


def known_alerts() -> list[Alert]:
    return [
        alert(1, "sos", ack_after=30.0, resolved=False),
        replace(alert(2, "sos", ack_after=912.5), status="resolved", resolved_at=RAISED + 5000),
        alert(3, "sos", ack_after=380.2, device_id=2),
        alert(4, "fall", ack_after=52.0),
        alert(5, "fall"),  # still open
        alert(6, "no_motion", resolved=True),  # resolved, never acknowledged
    ]


def test_the_report_of_known_alerts() -> None:
    alerts = known_alerts()
    report = alerts_report(alerts, {2: 2, 5: 1}, {1: "Alice"}, since=T0, until=T0 + 86400)
    assert report == {
        "since": "2026-03-01T00:00:00Z",
        "until": "2026-03-02T00:00:00Z",
        "total": 6,
        "by_kind": {
            "fall": {"total": 2, "open": 1, "acknowledged": 1, "resolved": 0},
            "no_motion": {"total": 1, "open": 0, "acknowledged": 0, "resolved": 1},
            "sos": {"total": 3, "open": 0, "acknowledged": 2, "resolved": 1},
        },
        "by_status": {"open": 1, "acknowledged": 3, "resolved": 2},
        # 30, 52, 380.2, 912.5: median (52 + 380.2) / 2, p90 at rank ceil(3.6) = 4.
        "time_to_ack_s": {"median": 216.1, "p90": 912.5, "max": 912.5},
        "acknowledged": 4,
        "unacknowledged": 2,
        "escalations": 3,
        "escalated_alerts": 2,
        "slow_threshold_s": SLOW_ACK_S,
        "slow": [
            {
                "id": 2,
                "imei": "356307042440001",
                "name": "Alice",
                "kind": "sos",
                "ts": "2026-03-01T01:00:00Z",
                "raised_at": "2026-03-01T01:00:02.000Z",
                "acknowledged_at": "2026-03-01T01:15:14.500Z",
                "acknowledged_by": "sam@example.com",
                "time_to_ack_s": 912.5,
            },
            {
                "id": 3,
                "imei": "356307042440002",
                "name": None,  # a device the names do not know (retired)
                "kind": "sos",
                "ts": "2026-03-01T01:00:01Z",
                "raised_at": "2026-03-01T01:00:03.000Z",
                "acknowledged_at": "2026-03-01T01:06:23.200Z",
                "acknowledged_by": "sam@example.com",
                "time_to_ack_s": 380.2,
            },
        ],
    }


def test_exactly_five_minutes_is_not_slow() -> None:
    report = alerts_report([alert(1, ack_after=SLOW_ACK_S)], {}, {}, since=T0, until=T0 + 1)
    assert report["slow"] == []


def test_an_empty_range() -> None:
    report = alerts_report([], {}, {}, since=T0, until=T0 + 1)
    assert report["total"] == 0 and report["by_kind"] == {} and report["slow"] == []
    assert report["by_status"] == {"open": 0, "acknowledged": 0, "resolved": 0}
    assert report["time_to_ack_s"] == {"median": None, "p90": None, "max": None}
    assert alerts_report_rows([], {}) == [
        {
            "kind": "all",
            "total": 0,
            "open": 0,
            "acknowledged": 0,
            "resolved": 0,
            "ack_median_s": None,
            "ack_p90_s": None,
            "ack_max_s": None,
            "slow": 0,
            "escalations": 0,
        }
    ]


def test_csv_rows_per_kind_then_all_with_the_json_figures() -> None:
    alerts = known_alerts()
    rows = alerts_report_rows(alerts, {2: 2, 5: 1})
    assert all(tuple(row) == CSV_COLUMNS for row in rows)
    assert [row["kind"] for row in rows] == ["fall", "no_motion", "sos", "all"]
    fall, no_motion, sos, everything = rows
    assert sos == {
        "kind": "sos",
        "total": 3,
        "open": 0,
        "acknowledged": 2,
        "resolved": 1,
        "ack_median_s": 380.2,
        "ack_p90_s": 912.5,
        "ack_max_s": 912.5,
        "slow": 2,
        "escalations": 2,
    }
    assert (fall["ack_median_s"], fall["escalations"], fall["slow"]) == (52.0, 1, 0)
    assert no_motion["ack_max_s"] is None
    report = alerts_report(alerts, {2: 2, 5: 1}, {}, since=T0, until=T0 + 1)
    assert everything == {
        "kind": "all",
        "total": report["total"],
        **report["by_status"],
        "ack_median_s": report["time_to_ack_s"]["median"],
        "ack_p90_s": report["time_to_ack_s"]["p90"],
        "ack_max_s": report["time_to_ack_s"]["max"],
        "slow": len(report["slow"]),
        "escalations": report["escalations"],
    }

"""GET /api/v1/reports/alerts through the API, over each storage adapter (CONTRACT §9): the figures
of known alerts as JSON and as CSV (the same ones), a viewer may read it, another tenant's alerts
never show, each read is audited, and bad ranges or formats are 422s that say why.

Time to acknowledge is between two server clocks the store reads itself, so the alerts are raised
and acknowledged under a clock set by hand (`clock`); the HTTP calls run on the real one.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from shared.store import Device
from shared.store.alerts import Alert
from tests.helpers.api import T0, ApiHarness

DAY = 86400
RANGE = {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}
STORED = 1_780_000_000.0  # when the server stored the alerts (its clock, not the device's)


@contextmanager
def clock(monkeypatch: pytest.MonkeyPatch, at: float) -> Iterator[None]:
    """The store's clock (time.time) reads `at` inside the block."""
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: at)
        yield


async def raise_and_ack(
    harness: ApiHarness,
    monkeypatch: pytest.MonkeyPatch,
    device: Device,
    *,
    ts: int,
    kind: str = "sos",
    ack_after: float | None = None,
    resolve: bool = False,
) -> Alert:
    with clock(monkeypatch, STORED):
        alert = await harness.alert(device, kind=kind, ts=ts)
    if ack_after is not None:
        with clock(monkeypatch, STORED + ack_after):
            alert = await harness.store.acknowledge_alert(device.tenant_id, alert.id, by="sam@acme.example") or alert
    if resolve:
        with clock(monkeypatch, STORED + 5000):
            alert = await harness.store.resolve_alert(device.tenant_id, alert.id, by="sam@acme.example") or alert
    return alert


async def report(harness: ApiHarness, headers: dict[str, str], **params: str) -> Any:
    answer = await harness.http.get("/api/v1/reports/alerts", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer


async def test_the_report_of_known_alerts_as_json_and_csv(harness: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant, other_tenant = await harness.tenant(), await harness.tenant()
    viewer, admin = await harness.caller(tenant, "viewer"), await harness.caller(tenant, "admin")
    other_admin = await harness.caller(other_tenant, "admin")
    alice, bob = await harness.device(tenant, name="Alice"), await harness.device(tenant, name="Bob")
    theirs = await harness.device(other_tenant, name="Zed")

    slowest = await raise_and_ack(harness, monkeypatch, alice, ts=T0 + 10, ack_after=912.5)
    await raise_and_ack(harness, monkeypatch, alice, ts=T0 + 20, ack_after=30.0, resolve=True)
    await raise_and_ack(harness, monkeypatch, alice, ts=T0 + 30, kind="fall")  # still open
    slow = await raise_and_ack(harness, monkeypatch, bob, ts=T0 + 40, kind="fall", ack_after=400.0)
    await raise_and_ack(harness, monkeypatch, bob, ts=T0 + 50, kind="no_motion", resolve=True)  # never acked
    await raise_and_ack(harness, monkeypatch, alice, ts=T0 + DAY, ack_after=999.0)  # `until` is exclusive
    await raise_and_ack(harness, monkeypatch, alice, ts=T0 - 1, ack_after=999.0)  # before `since`
    await raise_and_ack(harness, monkeypatch, theirs, ts=T0 + 60, kind="tamper", ack_after=2000.0)
    for step in (2, 3):
        await harness.store.add_alert_event(slowest.id, action="escalated", actor=None, detail={"step": step})
    await harness.store.add_alert_event(slow.id, action="escalated", actor=None, detail={"step": 2})

    body = (await report(harness, viewer.headers, **RANGE)).json()
    assert body == {
        "since": "2026-01-01T00:00:00Z",
        "until": "2026-01-02T00:00:00Z",
        "total": 5,
        "by_kind": {
            "fall": {"total": 2, "open": 1, "acknowledged": 1, "resolved": 0},
            "no_motion": {"total": 1, "open": 0, "acknowledged": 0, "resolved": 1},
            "sos": {"total": 2, "open": 0, "acknowledged": 1, "resolved": 1},
        },
        "by_status": {"open": 1, "acknowledged": 2, "resolved": 2},
        "time_to_ack_s": {"median": 400.0, "p90": 912.5, "max": 912.5},
        "acknowledged": 3,
        "unacknowledged": 2,
        "escalations": 3,
        "escalated_alerts": 2,
        "slow_threshold_s": 300,
        "slow": [
            {
                "id": slowest.id,
                "imei": alice.imei,
                "name": "Alice",
                "kind": "sos",
                "ts": "2026-01-01T00:00:10Z",
                "raised_at": "2026-05-28T20:26:40.000Z",
                "acknowledged_at": "2026-05-28T20:41:52.500Z",
                "acknowledged_by": "sam@acme.example",
                "time_to_ack_s": 912.5,
            },
            {
                "id": slow.id,
                "imei": bob.imei,
                "name": "Bob",
                "kind": "fall",
                "ts": "2026-01-01T00:00:40Z",
                "raised_at": "2026-05-28T20:26:40.000Z",
                "acknowledged_at": "2026-05-28T20:33:20.000Z",
                "acknowledged_by": "sam@acme.example",
                "time_to_ack_s": 400.0,
            },
        ],
    }

    answer = await report(harness, viewer.headers, **RANGE, format="csv")
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == 'attachment; filename="solewatch-alerts-20260101-20260102.csv"'
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["kind"] for row in rows] == ["fall", "no_motion", "sos", "all"]
    everything = rows[-1]
    # The same figures as the JSON (CSV cells are text; an empty cell is a figure with no value).
    assert everything == {
        "kind": "all",
        "total": str(body["total"]),
        **{status: str(n) for status, n in body["by_status"].items()},
        "ack_median_s": str(body["time_to_ack_s"]["median"]),
        "ack_p90_s": str(body["time_to_ack_s"]["p90"]),
        "ack_max_s": str(body["time_to_ack_s"]["max"]),
        "slow": str(len(body["slow"])),
        "escalations": str(body["escalations"]),
    }
    for row in rows[:-1]:
        counts = body["by_kind"][row["kind"]]
        assert {name: int(row[name]) for name in counts} == counts
    assert rows[0] == {
        "kind": "fall",
        "total": "2",
        "open": "1",
        "acknowledged": "1",
        "resolved": "0",
        "ack_median_s": "400.0",
        "ack_p90_s": "400.0",
        "ack_max_s": "400.0",
        "slow": "1",
        "escalations": "1",
    }
    assert (rows[1]["ack_median_s"], rows[1]["slow"]) == ("", "0")  # no_motion: never acknowledged

    # Another tenant sees its own alert only.
    theirs_report = (await report(harness, other_admin.headers, **RANGE)).json()
    assert theirs_report["total"] == 1 and list(theirs_report["by_kind"]) == ["tamper"]
    assert [line["imei"] for line in theirs_report["slow"]] == [theirs.imei]

    # Each read left one entry, naming the report, the range and the format.
    audit = await harness.http.get("/api/v1/audit", params={"action": "report.read"}, headers=admin.headers)
    entries = audit.json()["items"]
    assert [(e["actor"]["id"], e["target"], e["detail"]) for e in entries] == [
        (str(viewer.user_id), {"type": "report", "id": "alerts"}, {"report": "alerts", **RANGE, "format": fmt})
        for fmt in ("csv", "json")  # newest first
    ]


async def test_a_range_without_alerts(harness: ApiHarness) -> None:
    viewer = await harness.caller(await harness.tenant(), "viewer")
    body = (await report(harness, viewer.headers, **RANGE)).json()
    assert body["total"] == 0 and body["by_kind"] == {} and body["slow"] == []
    assert body["time_to_ack_s"] == {"median": None, "p90": None, "max": None}
    rows = list(csv.DictReader(io.StringIO((await report(harness, viewer.headers, **RANGE, format="csv")).text)))
    assert [(row["kind"], row["total"], row["ack_median_s"]) for row in rows] == [("all", "0", "")]


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"until": RANGE["until"]}, "since", "required"),
        ({"since": RANGE["since"]}, "until", "required"),
        ({"since": RANGE["until"], "until": RANGE["since"]}, "until", "after since"),
        ({"since": RANGE["since"], "until": RANGE["since"]}, "until", "after since"),
        ({"since": "2025-01-01T00:00:00Z", "until": "2026-01-03T00:00:00Z"}, "until", "366 days"),
        ({"since": "yesterday", "until": RANGE["until"]}, "since", ""),
        ({**RANGE, "format": "xlsx"}, "format", "'json' or 'csv'"),
    ],
)
async def test_bad_ranges_and_formats_are_422s_naming_the_field(
    harness: ApiHarness, params: dict[str, str], field: str, says: str
) -> None:
    viewer = await harness.caller(await harness.tenant(), "viewer")
    answer = await harness.http.get("/api/v1/reports/alerts", params=params, headers=viewer.headers)
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert error["loc"] == ["query", field] and says in error["msg"]


async def test_a_year_and_a_day_is_the_longest_range(harness: ApiHarness) -> None:
    viewer = await harness.caller(await harness.tenant(), "viewer")
    leap_year = {"since": "2028-01-01T00:00:00Z", "until": "2029-01-01T00:00:00Z"}  # 366 days
    assert (await report(harness, viewer.headers, **leap_year)).json()["total"] == 0

"""GET /api/v1/reports/workers and GET /api/v1/devices/{imei}/trips through the API, over each
storage adapter (CONTRACT §9): a worker's known morning as JSON and as CSV (the same figures),
before and after the hour totals are summed, paged; a tenant hiding positions gets no distance and
no trips; every read is audited; bad requests are clear 422s and 404s.

The figures' oracle is `shared.reports.totals.totals` over the same frames, held to known answers on
synthetic tracks in tests/unit/test_report_track.py; here a few are also checked outright.
"""

from __future__ import annotations

import csv
import io
import random
import time
from typing import Any

import pytest

from services.notifications.report_hours import catch_up
from shared.protocols.xsole import Activity, Heartbeat, Position
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.reports.totals import totals
from shared.store import Device, FrameRecord
from shared.store.telemetry import StoredActivity, StoredHeartbeat, StoredPosition
from tests.helpers.api import T0, ApiHarness, Caller
from tests.helpers.stored import commit_frames
from tests.helpers.tracks import SITE, Receiver, moved, stand, walk

MORNING = T0 + 8 * 3600  # 2026-01-01T08:00:00Z
RANGE = {"since": "2026-01-01T07:30:00Z", "until": "2026-01-01T11:45:00Z"}  # partial hours at both ends
SINCE, UNTIL = T0 + 7 * 3600 + 1800, T0 + 11 * 3600 + 2700
GAP_S = 600


def alices_morning() -> tuple[list[StoredPosition], list[StoredActivity], list[StoredHeartbeat]]:
    """Stands 20 min, walks 1 km north, stands 30 min, walks 500 m east, stands 20 min: a fix and an
    activity every 30 s (walking: 40 steps each), a heartbeat every 60 s."""
    receiver = Receiver(random.Random(7))
    positions: list[StoredPosition] = []
    here = SITE

    def now() -> int:
        return positions[-1].ts + 30 if positions else MORNING

    def stay(seconds: int) -> None:
        positions.extend(stand(here, start_ts=now(), seconds=seconds, receiver=receiver, seq=len(positions)))

    def go(north: float = 0, east: float = 0) -> None:
        nonlocal here
        there = moved(*here, north_m=north, east_m=east)
        positions.extend(walk([here, there], start_ts=now(), receiver=receiver, interval_s=30, seq=len(positions)))
        here = there

    stay(1200), go(north=1000), stay(1800), go(east=500), stay(1200)
    activities = [
        StoredActivity(
            p.ts, 10_000 + p.seq, 40 if p.speed_cms >= 50 else 0, 2 if p.speed_cms >= 50 else 1, 80, 80, False
        )
        for p in positions
    ]
    beats = [StoredHeartbeat(ts, 20_000 + ts % 100_000, 80, -70) for ts in range(MORNING, positions[-1].ts, 60)]
    return positions, activities, beats


async def store_morning(harness: ApiHarness, device: Device) -> dict[str, Any]:
    positions, activities, beats = alices_morning()
    events: list[Any] = [
        Position(p.seq, p.ts, p.lat_e7, p.lon_e7, p.alt_m, p.speed_cms, 0, 9, p.hdop_d, 80, FLAG_FIX_VALID)
        for p in positions
    ]
    events += [Activity(a.seq, a.ts, a.steps, a.state, 80, 80, 0) for a in activities]
    events += [Heartbeat(h.seq, h.ts, 80, -70) for h in beats]
    events.sort(key=lambda e: e.ts)
    records = [FrameRecord(device.id, device.tenant_id, device.imei, e, time.time()) for e in events]
    for start in range(0, len(records), 400):
        await commit_frames(harness.store, records[start : start + 400])
    found = totals(positions, activities, beats, lo=SINCE, hi=UNTIL, gap_s=GAP_S)
    return {
        "distance_m": found.distance_m,
        "online_s": round(found.online_s),
        "walking_s": round(found.walking_s),
        "still_s": round(found.still_s),
        "steps": found.steps,
    }


async def get(harness: ApiHarness, caller: Caller, path: str, **params: Any) -> Any:
    answer = await harness.http.get(path, params=params, headers=caller.headers)
    assert answer.status_code == 200, answer.text
    return answer


async def test_a_workers_morning_as_json_and_csv(harness: ApiHarness) -> None:
    tenant = await harness.tenant()
    viewer, admin = await harness.caller(tenant, "viewer"), await harness.caller(tenant, "admin")
    alice, bob = await harness.device(tenant, name="Alice"), await harness.device(tenant, name="=cmd|' /C calc'!A0")
    theirs = await harness.device(await harness.tenant(), name="Zed")
    expected = await store_morning(harness, alice)
    await store_morning(harness, theirs)
    assert expected["walking_s"] == pytest.approx(1500 / 1.4, abs=60)  # the walks, to a fix or two
    assert expected["still_s"] == pytest.approx(1200 + 1800 + 1200, abs=60)
    assert expected["steps"] == 40 * round(expected["walking_s"] / 30)
    assert expected["online_s"] == pytest.approx(4200 + 1500 / 1.4, abs=60)
    for kind, took in (("sos", 60.0), ("fall", 120.0), ("fall", None)):
        alert = await harness.alert(alice, kind=kind, ts=MORNING + 600)
        if took is not None:
            now = time.time()
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(time, "time", lambda at=now + took: at)
                await harness.store.acknowledge_alert(tenant, alert.id, by="sam@acme.example")

    bodies = [(await get(harness, viewer, "/api/v1/reports/workers", **RANGE)).json()]
    assert await catch_up(harness.store, gap_s=GAP_S) > 0  # now from the hour totals
    bodies.append((await get(harness, viewer, "/api/v1/reports/workers", **RANGE)).json())
    for body in bodies:
        assert (body["since"], body["until"], body["location_visible"], body["next_cursor"]) == (
            RANGE["since"],
            RANGE["until"],
            True,
            None,
        )
        [mine, bobs] = body["items"]
        assert mine["imei"] == alice.imei and mine["name"] == "Alice"
        assert mine["distance_m"] == pytest.approx(expected["distance_m"], abs=10)  # the meter restarts each hour
        assert mine["distance_m"] == pytest.approx(1500, rel=0.03)
        for name in ("online_s", "walking_s", "still_s", "steps"):
            assert mine[name] == expected[name], name
        assert (mine["running_s"], mine["lying_s"], mine["off_foot_s"]) == (0, 0, 0)
        assert mine["alerts"] == {"fall": 2, "sos": 1}
        assert mine["time_to_ack_s"]["max"] == pytest.approx(120, abs=1)
        assert bobs["steps"] == 0 and bobs["alerts"] == {} and bobs["time_to_ack_s"]["median"] is None

    answer = await get(harness, viewer, "/api/v1/reports/workers", **RANGE, format="csv")
    assert answer.headers["content-type"].startswith("text/csv")
    assert "solewatch-workers-20260101-20260101.csv" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["imei"] for row in rows] == [alice.imei, bob.imei]  # never another tenant's
    assert rows[1]["name"].startswith("'=")  # a name a spreadsheet would run stays text
    json_row = bodies[-1]["items"][0]
    assert float(rows[0]["distance_m"]) == json_row["distance_m"]
    for name in ("online_s", "walking_s", "running_s", "still_s", "lying_s", "off_foot_s", "steps"):
        assert int(rows[0][name]) == json_row[name], name
    assert rows[0]["alerts"] == "fall:2 sos:1"
    assert float(rows[0]["ack_max_s"]) == json_row["time_to_ack_s"]["max"]

    # One worker; paging by device.
    one = (await get(harness, viewer, "/api/v1/reports/workers", **RANGE, imei=alice.imei)).json()
    assert one["items"] == [bodies[-1]["items"][0]]
    first = (await get(harness, viewer, "/api/v1/reports/workers", **RANGE, limit=1)).json()
    rest = (await get(harness, viewer, "/api/v1/reports/workers", **RANGE, cursor=first["next_cursor"])).json()
    assert [w["imei"] for w in first["items"] + rest["items"]] == [alice.imei, bob.imei] and not rest["next_cursor"]

    audit = (await get(harness, admin, "/api/v1/audit", action="report.read")).json()["items"]
    assert len(audit) == 6
    assert audit[0]["detail"] == {"report": "workers", **RANGE, "format": "json"}
    assert audit[2]["detail"] == {"report": "workers", **RANGE, "format": "json", "imei": alice.imei}


async def test_a_workers_trips_and_stops(harness: ApiHarness) -> None:
    tenant = await harness.tenant()
    viewer, admin = await harness.caller(tenant, "viewer"), await harness.caller(tenant, "admin")
    alice = await harness.device(tenant, name="Alice")
    await store_morning(harness, alice)
    path = f"/api/v1/devices/{alice.imei}/trips"
    body = (await get(harness, viewer, path, **RANGE)).json()
    assert body["thresholds"] == {"min_stop_s": 300, "min_trip_m": 100.0, "stop_radius_m": 50.0}
    assert [item["type"] for item in body["items"]] == ["stop", "trip", "stop", "trip", "stop"]
    trips = [item for item in body["items"] if item["type"] == "trip"]
    assert [t["distance_m"] for t in trips] == pytest.approx([1000, 500], rel=0.03)
    assert trips[0]["duration_s"] == pytest.approx(1000 / 1.4, abs=60)
    assert body["items"][0]["start"] == "2026-01-01T08:00:00Z"
    assert body["items"][2]["duration_s"] == pytest.approx(1800, abs=60)
    assert body["items"][1]["end_position"]["lat"] == pytest.approx(moved(*SITE, north_m=1000)[0], abs=2e-4)

    # Thresholds per request: stops of 40 min or more only, so the 30 min stay joins the trips around it.
    longer = (await get(harness, viewer, path, **RANGE, min_stop_s=2400)).json()
    assert [item["type"] for item in longer["items"]] == ["trip"]
    assert longer["items"][0]["distance_m"] == pytest.approx(1500, rel=0.03)

    # Paged, then as CSV: the same items.
    first = (await get(harness, viewer, path, **RANGE, limit=2)).json()
    rest = (await get(harness, viewer, path, **RANGE, limit=10, cursor=first["next_cursor"])).json()
    assert first["items"] + rest["items"] == body["items"] and rest["next_cursor"] is None
    rows = list(csv.DictReader(io.StringIO((await get(harness, viewer, path, **RANGE, format="csv")).text)))
    assert [(r["type"], r["start"], float(r["distance_m"]), int(r["duration_s"])) for r in rows] == [
        (i["type"], i["start"], i["distance_m"], i["duration_s"]) for i in body["items"]
    ]
    assert float(rows[1]["end_lat"]) == body["items"][1]["end_position"]["lat"]

    audit = (await get(harness, admin, "/api/v1/audit", action="positions.read")).json()["items"]
    assert {entry["detail"]["history"] for entry in audit} == {"trips"}
    assert audit[-1]["target"] == {"type": "device", "id": alice.imei}
    assert len(audit) == 4  # the continuation of the paged read wrote none


async def test_a_tenant_hiding_positions_gets_no_distance_and_no_trips(harness: ApiHarness) -> None:
    tenant = await harness.tenant()
    admin = await harness.caller(tenant, "admin")
    alice = await harness.device(tenant, name="Alice")
    expected = await store_morning(harness, alice)
    put = await harness.http.put(
        "/api/v1/tenant/settings", json={"location_visibility": "alerts_only"}, headers=admin.headers
    )
    assert put.status_code == 200
    body = (await get(harness, admin, "/api/v1/reports/workers", **RANGE)).json()
    assert body["location_visible"] is False
    [mine] = body["items"]
    assert mine["distance_m"] is None and mine["steps"] == expected["steps"]  # what they did, not where
    rows = list(
        csv.DictReader(io.StringIO((await get(harness, admin, "/api/v1/reports/workers", **RANGE, format="csv")).text))
    )
    assert rows[0]["distance_m"] == ""
    trips = (await get(harness, admin, f"/api/v1/devices/{alice.imei}/trips", **RANGE)).json()
    assert trips["items"] == []
    # An alert opens a window (from 15 min before it): what lies in it shows again.
    await harness.alert(alice, ts=MORNING + 3600)
    trips = (await get(harness, admin, f"/api/v1/devices/{alice.imei}/trips", **RANGE)).json()
    assert trips["items"] and trips["items"][0]["start"] >= "2026-01-01T08:45:00Z"


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/api/v1/reports/workers", {"until": RANGE["until"]}, 422, "since"),
        ("/api/v1/reports/workers", {"since": RANGE["until"], "until": RANGE["since"]}, 422, "until"),
        ("/api/v1/reports/workers", {**RANGE, "imei": "12"}, 422, "imei"),
        ("/api/v1/reports/workers", {**RANGE, "imei": "356307042449999"}, 404, None),
        ("/api/v1/reports/workers", {**RANGE, "cursor": "!!"}, 422, "cursor"),
        ("/api/v1/reports/workers", {**RANGE, "format": "pdf"}, 422, "format"),
        ("/api/v1/devices/356307042449999/trips", RANGE, 404, None),
        ("/api/v1/devices/{imei}/trips", {**RANGE, "min_stop_s": "5"}, 422, "min_stop_s"),
        ("/api/v1/devices/{imei}/trips", {**RANGE, "stop_radius_m": "-1"}, 422, "stop_radius_m"),
        ("/api/v1/devices/{imei}/trips", {"since": RANGE["since"]}, 422, "until"),
    ],
)
async def test_bad_requests_say_what_is_wrong(
    harness: ApiHarness, path: str, params: dict[str, str], status: int, field: str | None
) -> None:
    tenant = await harness.tenant()
    viewer = await harness.caller(tenant, "viewer")
    alice = await harness.device(tenant, name="Alice")
    answer = await harness.http.get(path.format(imei=alice.imei), params=params, headers=viewer.headers)
    assert answer.status_code == status, answer.text
    if field is not None:
        assert field in [error["loc"][-1] for error in answer.json()["detail"]]


async def test_activity_per_day_in_the_callers_time_zone(harness: ApiHarness) -> None:
    tenant = await harness.tenant()
    viewer = await harness.caller(tenant, "viewer")
    alice, bob = await harness.device(tenant, name="Alice"), await harness.device(tenant, name="Bob")
    await store_morning(harness, alice)
    await catch_up(harness.store, gap_s=GAP_S)
    # Two days of Tokyo (UTC+9): the morning, 08:00-10:20 UTC, is the evening of its 1 January.
    tokyo = {"since": "2026-01-01T00:00:00+09:00", "until": "2026-01-03T00:00:00+09:00", "tz": "Asia/Tokyo"}
    body = (await get(harness, viewer, "/api/v1/reports/activity", **tokyo)).json()
    assert (body["tz"], body["since"], body["location_visible"]) == ("Asia/Tokyo", "2025-12-31T15:00:00Z", True)
    [mine, bobs] = body["items"]
    assert [day["date"] for day in mine["days"]] == ["2026-01-01", "2026-01-02"]
    whole = (await get(harness, viewer, "/api/v1/reports/workers", since=tokyo["since"], until=tokyo["until"])).json()
    first, second = mine["days"]
    for name in ("online_s", "walking_s", "still_s", "steps"):
        assert first[name] == whole["items"][0][name] > 0, name
        assert second[name] == 0 and all(day[name] == 0 for day in bobs["days"])
    assert first["distance_m"] == pytest.approx(whole["items"][0]["distance_m"], abs=0.2)

    # New York (UTC-5) splits the same range into three days: the morning falls on its 1 January too.
    new_york = (await get(harness, viewer, "/api/v1/reports/activity", **{**tokyo, "tz": "America/New_York"})).json()
    assert [(d["date"], d["steps"] > 0) for d in new_york["items"][0]["days"]] == [
        ("2025-12-31", False),
        ("2026-01-01", True),
        ("2026-01-02", False),
    ]
    rows = list(
        csv.DictReader(
            io.StringIO((await get(harness, viewer, "/api/v1/reports/activity", **tokyo, format="csv")).text)
        )
    )
    assert [(r["imei"], r["date"], int(r["steps"])) for r in rows] == [
        (alice.imei, "2026-01-01", first["steps"]),
        (alice.imei, "2026-01-02", 0),
        (bob.imei, "2026-01-01", 0),
        (bob.imei, "2026-01-02", 0),
    ]
    bad = await harness.http.get(
        "/api/v1/reports/activity", params={**tokyo, "tz": "Mars/Olympus"}, headers=viewer.headers
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "tz"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "0001-01-01T00:00:00Z", "until": "0001-01-03T00:00:00Z", "tz": "America/New_York"}, "since"),
        ({"since": "9999-12-29T00:00:00Z", "until": "9999-12-31T00:00:00Z", "tz": "Asia/Tokyo"}, "until"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "tz": "America"}, "tz"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "tz": "../../etc/passwd"}, "tz"),
    ],
)
async def test_activity_per_day_refuses_what_has_no_days(
    harness: ApiHarness, params: dict[str, str], field: str
) -> None:
    viewer = await harness.caller(await harness.tenant(), "viewer")
    answer = await harness.http.get("/api/v1/reports/activity", params=params, headers=viewer.headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["query", field]

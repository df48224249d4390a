"""A worker's history over both storage adapters: activity and heartbeats beside positions (paging,
ranges, tenant isolation), and the audit trail reads of it leave (positions.read, export.read)."""

from __future__ import annotations

from typing import Any

import pytest

from services.api.pagination import encode_cursor
from services.authn.apikeys import hash_api_key, new_api_key
from shared.protocols.xsole import Activity, Heartbeat
from shared.protocols.xsole.constants import FLAG_BUFFERED
from shared.store import Device, FrameRecord
from tests.helpers.api import T0, ApiHarness, Caller, position
from tests.helpers.stored import commit_frames

IMEI = "356307042441013"
UNKNOWN_IMEI = "490154203237518"
STATES = ["unknown", "still", "walking", "running", "lying", "off_foot"]


@pytest.fixture
async def api(harness: ApiHarness) -> ApiHarness:
    return harness  # once per storage adapter


async def store_frames(api: ApiHarness, device: Device, events: list[Any]) -> None:
    await commit_frames(api.store, [FrameRecord(device.id, device.tenant_id, device.imei, e, T0) for e in events])


async def reads(api: ApiHarness, tenant_id: int) -> list[dict[str, Any]]:
    """The tenant's read entries, oldest first, as the audit API would show their actor, action, target, detail."""
    log = await api.store.audit_log(tenant_id)
    return [
        {"actor": r.entry.actor.label, "action": r.entry.action, "target": r.entry.target_id, **r.entry.detail}
        for r in reversed(log)
        if r.entry.action.endswith(".read")
    ]


async def walk(api: ApiHarness, caller: Caller, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        page = await api.http.get(path, headers=caller.headers, params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"items", "next_cursor"}
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


# -- activity and heartbeats --------------------------------------------------------------------


async def test_activity_comes_oldest_first_with_state_names(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    # Sent newest first, the older ones buffered; a position and a heartbeat share the commit.
    events = [Activity(10 - n, T0 + 60 - 10 * n, 100 + n, n, 90, 80, FLAG_BUFFERED if n else 0) for n in range(6)]
    await store_frames(api, device, [*events, position(50, T0 + 5), Heartbeat(51, T0 + 6, 70, -80)])

    body = (await api.http.get(f"/api/v1/devices/{IMEI}/activity", headers=viewer.headers)).json()
    assert body["next_cursor"] is None
    assert body["items"][0] == {
        "ts": "2026-01-01T00:00:10Z",
        "steps": 105,
        "state": "off_foot",
        "cadence": 90,
        "battery": 80,
    }
    assert [item["state"] for item in body["items"]] == list(reversed(STATES))
    assert [item["ts"] for item in body["items"]] == sorted(item["ts"] for item in body["items"])


async def test_heartbeats_come_oldest_first(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    await store_frames(api, device, [Heartbeat(2, T0 + 20, 86, -71), Heartbeat(1, T0 + 10, 87, -70), position(3, T0)])
    body = (await api.http.get(f"/api/v1/devices/{IMEI}/heartbeats", headers=viewer.headers)).json()
    assert body == {
        "items": [
            {"ts": "2026-01-01T00:00:10Z", "battery": 87, "rssi": -70},
            {"ts": "2026-01-01T00:00:20Z", "battery": 86, "rssi": -71},
        ],
        "next_cursor": None,
    }


@pytest.mark.parametrize("kind", ["activity", "heartbeats"])
async def test_history_pages_and_ranges(api: ApiHarness, kind: str) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    # 25 frames, two per second of device time (the cursor must split a second).
    if kind == "activity":
        events: list[Any] = [Activity(n, T0 + n // 2, n, 2, 90, 80, 0) for n in range(25)]
    else:
        events = [Heartbeat(n, T0 + n // 2, 80, -60 - n) for n in range(25)]
    await store_frames(api, device, events)
    path = f"/api/v1/devices/{IMEI}/{kind}"

    walked = await walk(api, viewer, path, limit=4)
    assert len(walked) == 25
    assert walked == (await api.http.get(path, headers=viewer.headers, params={"limit": 1000})).json()["items"]
    # since and until are inclusive, with or without an offset; seconds round inwards.
    in_range = await walk(api, viewer, path, since="2026-01-01T00:00:03Z", until="2026-01-01T01:00:05+01:00", limit=3)
    assert len(in_range) == 6 and in_range[0]["ts"] == "2026-01-01T00:00:03Z" and in_range[-1]["ts"].endswith("05Z")
    fractional = await walk(api, viewer, path, since="2026-01-01T00:00:02.5", until="2026-01-01T00:00:03.5")
    assert [item["ts"] for item in fractional] == ["2026-01-01T00:00:03Z"] * 2
    reversed_range = await api.http.get(
        path, headers=viewer.headers, params={"since": "2026-01-01T00:00:09Z", "until": "2026-01-01T00:00:01Z"}
    )
    assert reversed_range.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("kind", ["positions", "activity", "heartbeats"])
async def test_another_tenants_or_an_unknown_device_is_not_found(api: ApiHarness, kind: str) -> None:
    device = await api.device(await api.tenant(), IMEI)
    await store_frames(api, device, [position(1), Activity(2, T0, 1, 2, 90, 80, 0), Heartbeat(3, T0, 80, -70)])
    outsider = await api.caller(await api.tenant())
    foreign = await api.http.get(f"/api/v1/devices/{IMEI}/{kind}", headers=outsider.headers)
    unknown = await api.http.get(f"/api/v1/devices/{UNKNOWN_IMEI}/{kind}", headers=outsider.headers)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json() == {"detail": "device not found"}
    assert await reads(api, outsider.tenant_id) == []  # nothing was read
    assert (await api.http.get(f"/api/v1/devices/{IMEI}/{kind}")).status_code == 401


@pytest.mark.parametrize("kind", ["positions", "activity", "heartbeats"])
@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"cursor": "!!!"},
        {"cursor": "AAAAAAAAAAE"},  # a one-integer cursor, not a (time, seq) one
        {"since": "yesterday"},
        {"since": "1767225600"},
        {"until": "2026-13-01T00:00:00Z"},
        {"export": "pdf"},
    ],
)
async def test_bad_history_parameters_are_422(api: ApiHarness, kind: str, params: dict[str, Any]) -> None:
    if "export" in params and kind != "positions":
        pytest.skip("only positions are exported")
    tenant = await api.tenant()
    await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    response = await api.http.get(f"/api/v1/devices/{IMEI}/{kind}", headers=viewer.headers, params=params)
    assert response.status_code == 422 and isinstance(response.json()["detail"], list)
    assert await reads(api, tenant) == []


# -- reads leave a trace ------------------------------------------------------------------------


async def test_a_paged_read_of_positions_leaves_one_entry_with_its_range(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    await api.store_positions(device, [position(n, T0 + n) for n in range(10)])
    since, until = "2026-01-01T00:00:00Z", "2026-01-01T01:00:09+01:00"
    assert len(await walk(api, viewer, f"/api/v1/devices/{IMEI}/positions", since=since, until=until, limit=3)) == 10

    assert await reads(api, tenant) == [
        {
            "actor": viewer.email,
            "action": "positions.read",
            "target": IMEI,
            "history": "positions",
            "since": "2026-01-01T00:00:00Z",
            "until": "2026-01-01T00:00:09Z",  # as asked, in UTC
            "cursor": None,
        }
    ]
    # Reading it again is another read.
    await walk(api, viewer, f"/api/v1/devices/{IMEI}/positions", limit=20)
    assert [(r["since"], r["until"]) for r in await reads(api, tenant)] == [
        (since, "2026-01-01T00:00:09Z"),
        (None, None),
    ]


async def test_a_cursor_not_handed_to_this_caller_starts_a_read_of_its_own(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    alice, bob = await api.caller(tenant, "viewer"), await api.caller(tenant, "viewer")
    await api.store_positions(device, [position(n, T0 + n) for n in range(6)])
    first = (await api.http.get(f"/api/v1/devices/{IMEI}/positions", headers=alice.headers, params={"limit": 2})).json()
    cursor = first["next_cursor"]
    # Bob pages on with Alice's cursor: his read is recorded, naming where it started.
    page = await api.http.get(
        f"/api/v1/devices/{IMEI}/positions", headers=bob.headers, params={"limit": 2, "cursor": cursor}
    )
    assert page.status_code == 200 and len(page.json()["items"]) == 2
    recorded = await reads(api, tenant)
    assert [(r["actor"], r["cursor"]) for r in recorded] == [(alice.email, None), (bob.email, cursor)]
    # A hand-made cursor too (they are opaque, not secret).
    forged = encode_cursor(T0, 0)
    made = await api.http.get(f"/api/v1/devices/{IMEI}/positions", headers=alice.headers, params={"cursor": forged})
    assert [item["ts"] for item in made.json()["items"]][:1] == ["2026-01-01T00:00:01Z"]
    assert (await reads(api, tenant))[-1]["cursor"] == forged


async def test_activity_reads_are_positions_reads_and_heartbeats_leave_none(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    await store_frames(api, device, [Activity(n, T0 + n, 1, 2, 90, 80, 0) for n in range(5)])
    await store_frames(api, device, [Heartbeat(n, T0 + n, 80, -70) for n in range(10, 15)])
    await walk(api, viewer, f"/api/v1/devices/{IMEI}/activity", limit=2)
    await walk(api, viewer, f"/api/v1/devices/{IMEI}/heartbeats", limit=2)
    assert [(r["action"], r["history"]) for r in await reads(api, tenant)] == [("positions.read", "activity")]


async def test_an_export_read_is_recorded_as_export_read_with_its_format(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    supervisor = await api.caller(tenant, "supervisor")
    await api.store_positions(device, [position(n, T0 + n) for n in range(5)])
    path = f"/api/v1/devices/{IMEI}/positions"
    shown = await walk(api, supervisor, path, limit=2)
    exported = await walk(api, supervisor, path, limit=2, export="geojson")
    assert exported == shown  # the same positions, in CONTRACT §2's shape
    await walk(api, supervisor, path, limit=10, export="csv")
    recorded = await reads(api, tenant)
    assert [(r["action"], r.get("format")) for r in recorded] == [
        ("positions.read", None),
        ("export.read", "geojson"),
        ("export.read", "csv"),
    ]


async def test_an_api_key_read_names_the_key(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    await api.store_positions(device, [position(1)])
    key = new_api_key()
    record = await api.store.create_api_key(
        tenant_id=tenant, name="fleet-sync", prefix=key[:8], key_hash=hash_api_key(key), role="viewer"
    )
    response = await api.http.get(f"/api/v1/devices/{IMEI}/positions", headers={"X-API-Key": key})
    assert response.status_code == 200
    [entry] = await api.store.audit_log(tenant)
    assert (entry.entry.actor.type, entry.entry.actor.id, entry.entry.actor.label) == (
        "api_key",
        str(record.id),
        "fleet-sync",
    )


async def test_bounds_at_the_ends_of_the_calendar_are_read_and_recorded(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    await api.store_positions(device, [position(1)])
    bounds = {"since": "0001-01-01T00:00:00+01:00", "until": "9999-12-31T23:59:59-01:00"}
    for kind in ("positions", "activity", "heartbeats"):
        response = await api.http.get(f"/api/v1/devices/{IMEI}/{kind}", headers=viewer.headers, params=bounds)
        assert response.status_code == 200, response.text
    assert [(r["since"], r["until"]) for r in await reads(api, tenant)] == [
        ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00")
    ] * 2


@pytest.mark.parametrize("kind", ["positions", "activity", "heartbeats"])
async def test_a_cursor_past_the_end_of_time_is_an_empty_page(api: ApiHarness, kind: str) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    await store_frames(api, device, [position(1), Activity(2, T0, 1, 2, 90, 80, 0), Heartbeat(3, T0, 80, -70)])
    last = "_" * 22  # every bit set: past any stored time
    response = await api.http.get(f"/api/v1/devices/{IMEI}/{kind}", headers=viewer.headers, params={"cursor": last})
    assert response.status_code == 200 and response.json() == {"items": [], "next_cursor": None}


async def test_a_cursor_reused_for_another_range_or_history_starts_a_read_of_its_own(api: ApiHarness) -> None:
    tenant = await api.tenant()
    device = await api.device(tenant, IMEI)
    viewer = await api.caller(tenant, "viewer")
    await api.store_positions(device, [position(n, T0 + n) for n in range(6)])
    await store_frames(api, device, [Activity(n, T0 + n, 1, 2, 90, 80, 0) for n in range(10, 16)])
    path = f"/api/v1/devices/{IMEI}/positions"
    until = "2026-01-01T00:00:02Z"
    first = await api.http.get(path, headers=viewer.headers, params={"limit": 2, "until": until})
    cursor = first.json()["next_cursor"]
    # The same cursor without the range's end reads past what the first entry names.
    await api.http.get(path, headers=viewer.headers, params={"limit": 2, "cursor": cursor})
    # And on the activity route it is another history.
    await api.http.get(f"/api/v1/devices/{IMEI}/activity", headers=viewer.headers, params={"cursor": cursor})
    recorded = await reads(api, tenant)
    assert [(r["history"], r["until"], r["cursor"]) for r in recorded] == [
        ("positions", until, None),
        ("positions", None, cursor),
        ("activity", None, cursor),
    ]

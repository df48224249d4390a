"""The weekly digest's content from known alerts and devices, and when a week's digest is due
(services/notifications/digest_content.py, digest.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notifications.digest import due_at, iso_week
from services.notifications.digest_content import SilentDevice, build_digest, html_body, subject, text
from shared.store.alerts import Alert

UNTIL = datetime(2026, 3, 9, 7, tzinfo=UTC).timestamp()  # Monday 2026-03-09 07:00 UTC, week 11
SINCE = UNTIL - 7 * 86400


def alert(id_: int, kind: str, *, ack_after: float | None = None, device_id: int = 1) -> Alert:
    created = SINCE + id_ * 3600.0
    return Alert(
        id=id_,
        tenant_id=1,
        device_id=device_id,
        imei=f"35630704244{device_id:04d}",
        kind=kind,
        ts=int(created),
        lat=None,
        lon=None,
        battery=None,
        status="open" if ack_after is None else "acknowledged",
        created_at=created,
        acknowledged_at=None if ack_after is None else created + ack_after,
        acknowledged_by=None if ack_after is None else f"admin{id_}@acme.example",
    )


ALERTS = [
    alert(1, "sos", ack_after=912.5),
    alert(2, "sos", ack_after=30.0),
    alert(3, "fall", ack_after=400.0, device_id=2),
    alert(4, "fall"),
    alert(5, "no_motion", ack_after=61.0),
    alert(6, "no_motion", ack_after=5.0),
    alert(7, "no_motion", ack_after=120.0),
    alert(8, "low_battery", ack_after=10.0),
]
NAMES = {1: "Alice", 2: "<b>Bob</b>"}
SILENT = [
    SilentDevice("356307042440009", "Cleo", UNTIL - 3 * 86400),
    SilentDevice("356307042440007", "Dan", None),
]


def test_figures_of_the_week() -> None:
    d = build_digest(ALERTS, NAMES, SILENT, tenant_name="Acme", week="2026-W11", since=SINCE, until=UNTIL)
    assert d.total == 8 and d.unacknowledged == 1
    assert d.by_kind == {"fall": 2, "low_battery": 1, "no_motion": 3, "sos": 2}
    # 5, 10, 30, 61, 120, 400, 912.5: median 61, p90 at rank ceil(6.3) = 7.
    assert d.time_to_ack_s == {"median": 61.0, "p90": 912.5, "max": 912.5}
    # The five slowest acknowledgements, whatever the 5-minute threshold: slowest first.
    assert [(line["id"], line["time_to_ack_s"], line["name"]) for line in d.slowest] == [
        (1, 912.5, "Alice"),
        (3, 400.0, "<b>Bob</b>"),
        (7, 120.0, "Alice"),
        (5, 61.0, "Alice"),
        (2, 30.0, "Alice"),
    ]
    # Silent devices, the never-seen first, then the longest silent.
    assert [device.name for device in d.silent] == ["Dan", "Cleo"]


def test_the_text_says_it_all() -> None:
    d = build_digest(ALERTS, NAMES, SILENT, tenant_name="Acme", week="2026-W11", since=SINCE, until=UNTIL)
    assert subject(d) == "[solewatch] Weekly digest 2026-W11 — Acme: 8 alerts"
    body = text(d)
    assert "From Mon 02 Mar 2026 to Mon 09 Mar 2026 (UTC)" in body
    assert "Alerts: 8 (1 never acknowledged)" in body
    assert "  no motion: 3\n" in body and "  sos: 2\n" in body
    assert "median 1 min 01 s, 90th percentile 15 min 12 s, longest 15 min 12 s" in body
    assert "  15 min 12 s — sos, Alice (356307042440001), raised 2026-03-02 08:00 UTC, acknowledged by admin1@" in body
    assert "  Cleo (356307042440009) — last seen 2026-03-06 07:00 UTC" in body
    assert "  Dan (356307042440007) — last seen never" in body


def test_the_html_has_the_same_figures_escaped() -> None:
    d = build_digest(ALERTS, NAMES, SILENT, tenant_name="Acme & Co", week="2026-W11", since=SINCE, until=UNTIL)
    page = html_body(d)
    assert "<h1>Weekly digest — Acme &amp; Co</h1>" in page
    assert "&lt;b&gt;Bob&lt;/b&gt;" in page and "<b>Bob</b>" not in page  # a device name is text, never markup
    assert "15 min 12 s" in page and "6 min 40 s" in page and "2026-03-06 07:00 UTC" in page
    assert page.count("<tr>") == 1 + 4 + 1 + 5 + 1 + 2  # header and rows: kinds, slowest, silent


def test_a_quiet_week() -> None:
    d = build_digest([], {}, [], tenant_name="Acme", week="2026-W11", since=SINCE, until=UNTIL)
    body = text(d)
    assert "Alerts: 0\n" in body
    assert "median —, 90th percentile —, longest —" in body
    assert "Slowest acknowledgements: none acknowledged this week" in body and "Silent devices: none" in body
    assert "None acknowledged this week." in html_body(d)


def test_iso_weeks_and_when_a_digest_is_due() -> None:
    wednesday = datetime(2026, 3, 11, 15, 30, tzinfo=UTC).timestamp()
    assert iso_week(wednesday) == "2026-W11"
    assert due_at(wednesday, weekday=0, hour=7) == UNTIL  # that week's Monday, 07:00 UTC
    assert due_at(wednesday, weekday=4, hour=18) == datetime(2026, 3, 13, 18, tzinfo=UTC).timestamp()
    sunday_night = datetime(2026, 3, 15, 23, 59, tzinfo=UTC).timestamp()
    assert (iso_week(sunday_night), due_at(sunday_night, weekday=0, hour=7)) == ("2026-W11", UNTIL)
    # ISO years: 2027-01-01 is a Friday of 2026's week 53.
    assert iso_week(datetime(2027, 1, 1, tzinfo=UTC).timestamp()) == "2026-W53"

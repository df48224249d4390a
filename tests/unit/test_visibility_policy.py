"""The location visibility policy (services/visibility/policy.py, CONTRACT §8): which device times
of a worker may be seen under each mode, against a direct reading of the contract's words."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.visibility.policy import ALERT_LEAD_S, ALWAYS, DeviceVisibility, alert_spans, shift_window
from shared.shift import ShiftWindow
from shared.store.alerts import Alert

T0 = 1767225600  # 2026-01-01T00:00:00Z, a Thursday


def alert(ts: int, resolved_at: float | None = None, device_id: int = 1) -> Alert:
    status = "open" if resolved_at is None else "resolved"
    return Alert(1, 1, device_id, "356307042441013", "sos", ts, 43.6, 7.0, 80, status, ts, resolved_at=resolved_at)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def in_some_alert(alerts: list[Alert], ts: float) -> bool:
    """The contract's words: from 15 minutes before an alert was raised until it is resolved (or now)."""
    return any(a.ts - ALERT_LEAD_S <= ts <= (math.inf if a.resolved_at is None else a.resolved_at) for a in alerts)


def test_always_shows_every_time() -> None:
    assert all(ALWAYS.shows(ts) for ts in (0, T0, T0 + 10**9))
    assert DeviceVisibility("always", None, alert_spans([alert(T0, T0 + 60)])).shows(T0 - 86400)


def test_an_alert_shows_from_15_minutes_before_it_until_it_is_resolved() -> None:
    seen = DeviceVisibility("alerts_only", None, alert_spans([alert(T0, resolved_at=T0 + 600)]))
    assert not seen.shows(T0 - ALERT_LEAD_S - 1)
    assert seen.shows(T0 - ALERT_LEAD_S)
    assert seen.shows(T0)
    assert seen.shows(T0 + 600)
    assert not seen.shows(T0 + 601)


def test_an_open_or_acknowledged_alert_shows_until_now() -> None:
    seen = DeviceVisibility("alerts_only", None, alert_spans([alert(T0)]))
    assert seen.shows(T0 + 86400 * 30) and not seen.shows(T0 - ALERT_LEAD_S - 1)


def test_without_alerts_alerts_only_shows_nothing() -> None:
    seen = DeviceVisibility("alerts_only")
    assert not any(seen.shows(T0 + n * 3600) for n in range(48))


def test_on_shift_shows_the_shift_hours_in_the_shift_time_zone() -> None:
    day = ShiftWindow.of([[8, 17]], "Europe/Paris")  # UTC+1 in January
    seen = DeviceVisibility("on_shift", day)
    assert not seen.shows(utc("2026-01-05T06:59:59"))
    assert seen.shows(utc("2026-01-05T07:00:00"))
    assert seen.shows(utc("2026-01-05T15:59:59"))
    assert not seen.shows(utc("2026-01-05T16:00:00"))


def test_on_shift_follows_daylight_saving_time() -> None:
    # Paris goes from UTC+1 to UTC+2 on 2026-03-29: 08:00 local is 07:00 UTC the day before, 06:00 UTC that day.
    seen = DeviceVisibility("on_shift", ShiftWindow.of([[8, 17]], "Europe/Paris"))
    assert not seen.shows(utc("2026-03-28T06:30:00")) and seen.shows(utc("2026-03-28T07:00:00"))
    assert seen.shows(utc("2026-03-29T06:30:00")) and not seen.shows(utc("2026-03-29T15:30:00"))


def test_a_night_shift_runs_past_midnight() -> None:
    seen = DeviceVisibility("on_shift", ShiftWindow.of([[22, 6]], "UTC"))
    assert seen.shows(utc("2026-01-05T23:30:00")) and seen.shows(utc("2026-01-06T05:59:00"))
    assert not seen.shows(utc("2026-01-06T06:00:00")) and not seen.shows(utc("2026-01-06T21:59:59"))


def test_on_shift_also_shows_alert_windows_outside_the_hours() -> None:
    night = utc("2026-01-05T02:00:00")
    seen = DeviceVisibility("on_shift", ShiftWindow.of([[8, 17]], "UTC"), alert_spans([alert(int(night), night + 60)]))
    assert seen.shows(night - ALERT_LEAD_S) and seen.shows(night + 60)
    assert not seen.shows(night - ALERT_LEAD_S - 1) and not seen.shows(night + 61)


def test_on_shift_without_shift_hours_shows_only_alerts() -> None:
    seen = DeviceVisibility("on_shift", shift_window(None), alert_spans([alert(T0, T0 + 60)]))
    assert seen.shows(T0) and not seen.shows(T0 + 3600) and not seen.shows(T0 - 3600)


def test_a_shift_that_cannot_be_read_hides_rather_than_shows() -> None:
    for stored in ({"hours": [[8, 30]]}, {"hours": [[8, 17]], "timezone": "Mars/Olympus"}, {"timezone": "UTC"}, {}):
        assert shift_window(stored) is None
    assert shift_window({"hours": [[8, 17]], "timezone": "Europe/Paris"}) == ShiftWindow.of([[8, 17]], "Europe/Paris")


def test_an_alert_resolved_before_it_was_raised_shows_nothing() -> None:
    # A device clock far ahead: the alarm's device time is after the server resolved it.
    assert alert_spans([alert(T0 + 7200, resolved_at=T0)]) == ()


alerts_strategy = st.lists(
    st.builds(
        alert,
        ts=st.integers(T0, T0 + 86400),
        resolved_at=st.none() | st.integers(T0 - 3600, T0 + 2 * 86400).map(float),
    ),
    max_size=8,
)
times = st.integers(T0 - 7200, T0 + 2 * 86400 + 7200)


@settings(max_examples=300, deadline=None)
@given(alerts=alerts_strategy, probes=st.lists(times, max_size=30))
def test_overlapping_alerts_merge_into_exactly_their_union(alerts: list[Alert], probes: list[int]) -> None:
    seen = DeviceVisibility("alerts_only", None, alert_spans(alerts))
    edges = [t for a in alerts for t in (a.ts - ALERT_LEAD_S, a.ts - ALERT_LEAD_S - 1)]
    edges += [int(a.resolved_at) + d for a in alerts if a.resolved_at is not None for d in (0, 1)]
    for ts in probes + edges:
        assert seen.shows(ts) == in_some_alert(alerts, ts), ts
    spans = alert_spans(alerts)
    assert all(earlier.end < later.start for earlier, later in itertools.pairwise(spans))


@settings(max_examples=300, deadline=None)
@given(
    alerts=alerts_strategy,
    start=st.integers(0, 23),
    end=st.integers(0, 24),
    zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]),
    probes=st.lists(times, min_size=1, max_size=30),
)
def test_on_shift_is_the_shift_or_an_alert(
    alerts: list[Alert], start: int, end: int, zone: str, probes: list[int]
) -> None:
    shift = ShiftWindow.of([[start, end]], zone)
    seen = DeviceVisibility("on_shift", shift, alert_spans(alerts))
    for ts in probes:
        assert seen.shows(ts) == (shift.contains(ts) or in_some_alert(alerts, ts))
    # and alerts_only is never wider than on_shift
    only = DeviceVisibility("alerts_only", None, alert_spans(alerts))
    assert all(seen.shows(ts) for ts in probes if only.shows(ts))

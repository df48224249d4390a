"""Reports' hour totals (ReportStore, shared/store/reports.py) for every adapter in STORE_FACTORIES:
stored frames mark their hours, summing the closed ones stores totals equal to those summed from
the frames, a late buffered frame (delivered twice) is counted once in the hour its device time
says, a report is exact before the worker has caught up, and erasing the device takes them."""

from __future__ import annotations

import pytest

from services.api.report_figures import worker_totals
from services.notifications.report_hours import catch_up
from shared.protocols.xsole import Activity, Heartbeat, Position
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID
from shared.reports.totals import Totals, totals
from shared.store import Device, Store
from shared.store.reports import HOUR_S
from shared.store.telemetry import StoredActivity, StoredHeartbeat, StoredPosition
from tests.contract.store_data import LAT, LON, TS, add_device, frame
from tests.helpers.stored import commit_frames

H0 = TS - 6 * HOUR_S  # three hours of frames, closed long ago
HOURS = 3
GAP_S = 600


def _frames(device: Device) -> tuple[list, list[StoredPosition], list[StoredActivity], list[StoredHeartbeat]]:
    """A worker walking north at 1.4 m/s for three hours: a position and an activity every 30 s, a heartbeat
    every 60 s (lying down for the second half of the middle hour); the frames and what the store returns."""
    events: list = []
    positions, activities, beats = [], [], []
    lat = LAT
    for i, ts in enumerate(range(H0, H0 + HOURS * HOUR_S, 30)):
        lying = H0 + HOUR_S + 1800 <= ts < H0 + 2 * HOUR_S
        if i and not lying:
            lat += round(42 / 0.0111)  # 42 m north per fix (1e-7 degree of latitude is 0.0111 m)
        events.append(Position(2 * i, ts, lat, LON, 12, 0 if lying else 140, 0, 9, 10, 80, FLAG_FIX_VALID))
        positions.append(StoredPosition(ts, 2 * i, lat, LON, 12, 0 if lying else 140, 0, 9, 10, 80, True, False))
        events.append(Activity(2 * i + 1, ts, 0 if lying else 40, 4 if lying else 2, 80, 80, 0))
        activities.append(StoredActivity(ts, 2 * i + 1, 0 if lying else 40, 4 if lying else 2, 80, 80, False))
        if i % 2 == 0:
            events.append(Heartbeat(100_000 + i, ts, 80, -70))
            beats.append(StoredHeartbeat(ts, 100_000 + i, 80, -70))
    return [frame(device, e) for e in events], positions, activities, beats


async def _store_walk(store: Store) -> tuple[Device, list[Totals]]:
    device = await add_device(store)
    records, positions, activities, beats = _frames(device)
    for start in range(0, len(records), 500):  # as the listener would: several commits
        await commit_frames(store, records[start : start + 500])
    hours = [totals(positions, activities, beats, lo=h, hi=h + HOUR_S, gap_s=GAP_S) for h in _hours()]
    return device, hours


def _hours() -> list[int]:
    return [H0 + k * HOUR_S for k in range(HOURS)]


def _sum(parts: list[Totals]) -> Totals:
    whole = Totals()
    for part in parts:
        whole.add(part)
    return whole


def _same(found: Totals, expected: Totals) -> None:
    assert found.as_tuple() == pytest.approx(expected.as_tuple(), abs=1e-6)


async def test_closed_hours_are_summed_as_their_frames_say(store: Store) -> None:
    device, expected = await _store_walk(store)
    assert expected[0].walking_s == 3600 - 30 + 30  # sanity: the walk is there to be summed
    assert await store.report_hour_sums([device.id], since=H0, until=H0 + HOURS * HOUR_S) == {}
    pending = await store.report_hours_pending([device.id], since=H0, until=H0 + HOURS * HOUR_S)
    assert pending == {(device.id, hour) for hour in _hours()}

    assert await catch_up(store, gap_s=GAP_S) >= HOURS
    assert await store.report_hours_pending([device.id], since=H0, until=H0 + HOURS * HOUR_S) == set()
    stored = await store.report_hour_totals([(device.id, hour) for hour in _hours()])
    for hour, hour_expected in zip(_hours(), expected, strict=True):
        _same(stored[device.id, hour], hour_expected)
    sums = await store.report_hour_sums([device.id], since=H0, until=H0 + HOURS * HOUR_S)
    _same(sums[device.id], _sum(expected))
    assert expected[1].lying_s == 1800 and expected[1].distance_m == pytest.approx(60 * 42, rel=0.01)
    assert await catch_up(store, gap_s=GAP_S) == 0  # nothing changed since


async def test_late_buffered_frames_count_once_in_their_hour(store: Store) -> None:
    device, expected = await _store_walk(store)
    await catch_up(store, gap_s=GAP_S)
    # Recorded offline in the middle hour, sent a day late, and sent twice (the first ACK was lost).
    late = [Activity(50_000 + k, H0 + HOUR_S + 15 + 30 * k, 7, 2, 80, 80, FLAG_BUFFERED) for k in range(5)]
    for _ in range(2):
        await commit_frames(store, [frame(device, event) for event in late])

    middle = (device.id, H0 + HOUR_S)
    assert middle in await store.report_hours_pending([device.id], since=H0, until=H0 + HOURS * HOUR_S)
    # Before the worker sums it again, a report sums the marked hour from its frames: already right.
    found = await worker_totals(store, [device.id], since=H0, until=H0 + HOURS * HOUR_S, gap_s=GAP_S)
    assert found[device.id].steps == _sum(expected).steps + 35

    await catch_up(store, gap_s=GAP_S)
    stored = await store.report_hour_totals([(device.id, hour) for hour in _hours()])
    assert stored[middle].steps == expected[1].steps + 35
    assert stored[device.id, H0].steps == expected[0].steps
    assert stored[device.id, H0 + 2 * HOUR_S].steps == expected[2].steps
    sums = await store.report_hour_sums([device.id], since=H0, until=H0 + HOURS * HOUR_S)
    assert sums[device.id].steps == _sum(expected).steps + 35


async def test_any_range_is_exact_whatever_the_workers_lag(store: Store) -> None:
    device, _ = await _store_walk(store)
    _records, positions, activities, beats = _frames(device)
    since, until = H0 + 1234, H0 + 2 * HOUR_S + 777  # partial hours at both edges
    direct = totals(positions, activities, beats, lo=since, hi=until, gap_s=GAP_S)
    before = await worker_totals(store, [device.id], since=since, until=until, gap_s=GAP_S)  # nothing summed yet
    await catch_up(store, gap_s=GAP_S)
    after = await worker_totals(store, [device.id], since=since, until=until, gap_s=GAP_S)
    for found in (before, after):
        assert found[device.id].as_tuple()[1:] == pytest.approx(direct.as_tuple()[1:], abs=1e-6)
        # The distance meter starts afresh at each hour's edge: a metre or so either way.
        assert found[device.id].distance_m == pytest.approx(direct.distance_m, abs=5)


async def test_an_erased_device_leaves_no_totals(store: Store) -> None:
    device, _ = await _store_walk(store)
    await catch_up(store, gap_s=GAP_S)
    assert await store.retire_device(device.id, erase=True)
    assert await store.report_hour_sums([device.id], since=H0, until=H0 + HOURS * HOUR_S) == {}
    assert await store.report_hours_pending([device.id], since=H0 - HOUR_S, until=H0 + 9 * HOUR_S) == set()


async def test_retention_takes_the_totals_of_what_it_deletes(store: Store) -> None:
    device, expected = await _store_walk(store)
    await catch_up(store, gap_s=GAP_S)
    before = H0 + HOUR_S + 1800  # half way through the middle hour
    while (await store.purge_telemetry(device.tenant_id, before)).more:
        pass
    hours = await store.report_hour_totals([(device.id, hour) for hour in _hours()])
    assert (device.id, H0) not in hours  # wholly before the cut-off: gone with its frames
    _same(hours[device.id, H0 + 2 * HOUR_S], expected[2])
    assert (device.id, H0 + HOUR_S) in await store.report_hours_pending([device.id], since=H0, until=before)
    await catch_up(store, gap_s=GAP_S)
    middle = (await store.report_hour_totals([(device.id, H0 + HOUR_S)]))[device.id, H0 + HOUR_S]
    assert middle.lying_s == expected[1].lying_s and middle.walking_s == 0  # the walking half was deleted

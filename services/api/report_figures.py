"""Workers' figures over any range (CONTRACT §9), from the stored hour totals and, where those
cannot answer, from the frames themselves.

A range [since, until) splits into whole hours, summed by the store, and at most two partial
hours at its edges, summed here from frames. Of the whole hours, those still pending (not
closed yet, or marked by a late frame and not summed again yet) are taken out of the store's
sum and summed here from frames too. So a report is exact whatever the summing worker's lag,
and a month's report for a thousand devices reads a thousand rows per day of the month, not
a month of frames (bench: `solewatch bench reports`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from shared.reports.totals import LOOK_S, Totals, totals
from shared.store.reports import HOUR_S, ReportStore, hour_of

# Devices whose frames one store read brings: few reads (each a trip to the store's thread), and
# memory for a hundred devices' hour of frames at a time, not a thousand's.
DEVICES_PER_READ = 100


def _hour_after(ts: int) -> int:
    return ts if ts % HOUR_S == 0 else hour_of(ts) + HOUR_S


async def worker_totals(
    store: ReportStore, device_ids: Sequence[int], *, since: int, until: int, gap_s: float
) -> dict[int, Totals]:
    """Each device's figures over device times [since, until)."""
    [found] = await worker_totals_by_piece(store, device_ids, [(since, until)], gap_s=gap_s)
    return found


async def worker_totals_by_piece(
    store: ReportStore, device_ids: Sequence[int], pieces: Sequence[tuple[int, int]], *, gap_s: float
) -> list[dict[int, Totals]]:
    """Each device's figures over each piece [lo, hi) of device time (consecutive days, say): the
    pending hours are asked for once, each piece's whole hours summed by the store."""
    found = [{device_id: Totals() for device_id in device_ids} for _ in pieces]
    wanted = [(lo, hi) for lo, hi in pieces if hi > lo]
    if not device_ids or not wanted:
        return found
    pending = await store.report_hours_pending(
        device_ids, since=hour_of(min(lo for lo, _ in wanted)), until=_hour_after(max(hi for _, hi in wanted))
    )
    stale = await store.report_hour_totals(pending)
    for totals_of, (lo, hi) in zip(found, pieces, strict=True):
        if hi > lo:
            await _piece(store, device_ids, totals_of, lo, hi, pending, stale, gap_s)
    return found


async def _piece(
    store: ReportStore,
    device_ids: Sequence[int],
    found: dict[int, Totals],
    since: int,
    until: int,
    pending: set[tuple[int, int]],
    stale: dict[tuple[int, int], Totals],
    gap_s: float,
) -> None:
    first, last = _hour_after(since), hour_of(until)  # the whole hours are [first, last)
    spans: dict[tuple[int, int], list[int]] = {}  # (lo, hi) summed from frames: for which devices
    if first < last:
        for device_id, stored in (await store.report_hour_sums(device_ids, since=first, until=last)).items():
            found[device_id].add(stored)
        for device_id, hour in sorted(pending):
            if first <= hour < last:
                if (device_id, hour) in stale:
                    found[device_id].add(stale[device_id, hour], -1)
                spans.setdefault((hour, hour + HOUR_S), []).append(device_id)
        edges = [(since, first)] if since < first else []
        edges += [(last, until)] if last < until else []
    else:
        edges = [(since, until)]
    for edge in edges:
        spans[edge] = list(device_ids)
    for (lo, hi), devices in spans.items():  # a read per span and DEVICES_PER_READ devices
        for start in range(0, len(devices), DEVICES_PER_READ):
            read = await store.report_frames(
                devices[start : start + DEVICES_PER_READ], since=lo - LOOK_S, until=hi + LOOK_S
            )
            for device_id, frames in read.items():
                found[device_id].add(totals(*frames, lo=lo, hi=hi, gap_s=gap_s))


def local_days(since: int, until: int, zone: ZoneInfo) -> list[tuple[str, int, int]]:
    """The days of `zone` that [since, until) touches: each one's date and its part of the range."""
    days: list[tuple[str, int, int]] = []
    day = datetime.fromtimestamp(since, zone).date()
    while True:
        start = int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())
        if start >= until:
            return days
        following = day + timedelta(days=1)
        end = int(datetime(following.year, following.month, following.day, tzinfo=zone).timestamp())
        days.append((day.isoformat(), max(since, start), min(until, end)))
        day = following

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

from shared.reports.totals import LOOK_S, Totals, totals
from shared.store.reports import HOUR_S, ReportStore, hour_of


def _hour_after(ts: int) -> int:
    return ts if ts % HOUR_S == 0 else hour_of(ts) + HOUR_S


async def worker_totals(
    store: ReportStore, device_ids: Sequence[int], *, since: int, until: int, gap_s: float
) -> dict[int, Totals]:
    """Each device's figures over device times [since, until)."""
    found = {device_id: Totals() for device_id in device_ids}
    if not device_ids or until <= since:
        return found
    first, last = _hour_after(since), hour_of(until)  # the whole hours are [first, last)
    pieces: list[tuple[int, int, int]] = []  # (device id, lo, hi) summed from frames
    if first < last:
        pending = await store.report_hours_pending(device_ids, since=first, until=last)
        for device_id, stored in (await store.report_hour_sums(device_ids, since=first, until=last)).items():
            found[device_id].add(stored)
        for (device_id, _), stale in (await store.report_hour_totals(pending)).items():
            found[device_id].add(stale, -1)
        pieces += [(device_id, hour, hour + HOUR_S) for device_id, hour in sorted(pending)]
        edges = [(since, first)] if since < first else []
        edges += [(last, until)] if last < until else []
    else:
        edges = [(since, until)]
    pieces += [(device_id, lo, hi) for lo, hi in edges for device_id in device_ids]
    for device_id, lo, hi in pieces:
        frames = await store.report_frames(device_id, since=lo - LOOK_S, until=hi + LOOK_S)
        found[device_id].add(totals(*frames, lo=lo, hi=hi, gap_s=gap_s))
    return found

"""Keeps reports' hour totals up to date (CONTRACT §9; shared/store/reports.py says how).

Every `report_hours_interval` it takes the marked device hours that have closed (their
hour and `LOOK_S` after it are past, with the 300 s a device clock may run ahead), sums
each from its frames again and stores the totals. It runs in the notifications service,
like the retention purge, under a lease in the shared cache: one process at a time in the
distributed mode (two would only do the same work twice). Between batches it rests as the
purge does, so that summing a backlog (a store opened for the first time, a fleet's buffered
frames after an outage) takes a small share of the process that ingestion shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from services.notifications.periodic import PeriodicJob
from shared.bus.outbox import CacheLease
from shared.cache import Cache
from shared.config import Settings
from shared.logging import get_logger
from shared.reports.totals import LOOK_S, Totals, totals
from shared.store.reports import HOUR_S, DueHour, ReportStore

log = get_logger("solewatch.reports")

FUTURE_S = 300  # how far ahead of the server's clock a device's time may run (docs/protocol.md)
BATCH = 200  # device hours summed per pass of the loop
DUTY = 0.25  # the share of the time a backlog may take

HOURS_SUMMED = Counter("report_hours_summed_total", "device hours summed again for reports")


def closed_before(now: float) -> int:
    """Hours starting before this have closed: no frame still to come can fall in or near them."""
    return int(now) - HOUR_S - LOOK_S - FUTURE_S


async def sum_hours(store: ReportStore, due: list[DueHour], *, gap_s: float) -> list[tuple[DueHour, Totals]]:
    """Each due hour's totals, summed from its frames: one read per hour for all its devices."""
    by_hour: dict[int, list[DueHour]] = {}
    for hour in due:
        by_hour.setdefault(hour.hour, []).append(hour)
    summed = []
    for start, hours in by_hour.items():
        frames = await store.report_frames(
            [hour.device_id for hour in hours], since=start - LOOK_S, until=start + HOUR_S + LOOK_S
        )
        for hour in hours:
            found = frames.get(hour.device_id)
            summed.append((hour, totals(*found, lo=start, hi=start + HOUR_S, gap_s=gap_s) if found else Totals()))
    return summed


async def _always() -> bool:
    return True


async def catch_up(
    store: ReportStore,
    *,
    gap_s: float,
    now: float | None = None,
    keep_going: Callable[[], Awaitable[bool]] = _always,
    rest: Callable[[float], Awaitable[object]] = asyncio.sleep,
    batch: int = BATCH,
) -> int:
    """Sum every closed marked hour, a batch at a time, resting after each (see DUTY); how many.
    `keep_going` is asked before each batch. Tests and the benchmark call it to complete the
    stored hours at once."""
    before = closed_before(time.time() if now is None else now)
    done = 0
    while await keep_going():
        started = time.monotonic()
        due = await store.report_hours_due(closed_before=before, limit=batch)
        if due:
            await store.save_report_hours(await sum_hours(store, due, gap_s=gap_s))
            done += len(due)
            HOURS_SUMMED.inc(len(due))
        if len(due) < batch:
            break
        if done % (batch * 25) == 0:
            log.info("report_hours_progress", summed=done)
        await rest((time.monotonic() - started) * (1 - DUTY) / DUTY)
    return done


class ReportHours(PeriodicJob):
    """Runs `catch_up` at start and every `report_hours_interval`, one process at a time."""

    name = "report-hours"

    def __init__(self, store: ReportStore, cache: Cache, settings: Settings):
        super().__init__()
        self._store = store
        self._lease = CacheLease(cache, "report-hours:leader")
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        self.interval = settings.report_hours_interval
        self.gap_s = settings.offline_after

    async def _keep_going(self) -> bool:
        return not self.stopping and await self._lease.held()

    async def run_once(self) -> int:
        try:
            started = time.monotonic()
            done = await catch_up(self._store, gap_s=self.gap_s, keep_going=self._keep_going, rest=self.rest)
            if done:
                log.info("report_hours_summed", hours=done, seconds=round(time.monotonic() - started, 3))
            return done
        finally:
            with contextlib.suppress(Exception):
                await self._lease.release()

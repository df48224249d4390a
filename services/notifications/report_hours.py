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
DRAIN_TIMEOUT_S = 5.0

HOURS_SUMMED = Counter("report_hours_summed_total", "device hours summed again for reports")


def closed_before(now: float) -> int:
    """Hours starting before this have closed: no frame still to come can fall in or near them."""
    return int(now) - HOUR_S - LOOK_S - FUTURE_S


async def sum_hours(store: ReportStore, due: list[DueHour], *, gap_s: float) -> list[tuple[DueHour, Totals]]:
    summed = []
    for hour in due:
        frames = await store.report_frames(hour.device_id, since=hour.hour - LOOK_S, until=hour.hour + HOUR_S + LOOK_S)
        summed.append((hour, totals(*frames, lo=hour.hour, hi=hour.hour + HOUR_S, gap_s=gap_s)))
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


class ReportHours:
    """Runs `catch_up` at start and every `report_hours_interval`, one process at a time."""

    def __init__(self, store: ReportStore, cache: Cache, settings: Settings):
        self._store = store
        self._lease = CacheLease(cache, "report-hours:leader")
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        self.interval = settings.report_hours_interval
        self.gap_s = settings.offline_after

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="report-hours")

    async def drain(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), DRAIN_TIMEOUT_S)
        await self.close()

    async def close(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _keep_going(self) -> bool:
        return not self._stopping.is_set() and await self._lease.held()

    async def _rest(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                started = time.monotonic()
                done = await catch_up(self._store, gap_s=self.gap_s, keep_going=self._keep_going, rest=self._rest)
                if done:
                    log.info("report_hours_summed", hours=done, seconds=round(time.monotonic() - started, 3))
            except Exception:  # a backend away: the next pass tries again
                log.exception("report_hours_failed")
            finally:
                with contextlib.suppress(Exception):
                    await self._lease.release()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

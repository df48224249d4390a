"""Reports' hour totals (CONTRACT §9): each device's figures per hour of device time, kept
up to date as frames arrive, so a month's report sums stored hours instead of reading a
month of frames.

How an hour stays right: every stored frame *marks* the hours whose totals it can change
(its own, and the neighbouring one when it lies within `totals.LOOK_S` of the edge). A
worker (services/notifications/report_hours.py) takes the marked hours that have closed,
sums their frames again (`totals.totals`) and saves the totals, clearing the mark only if
no frame marked the hour again meanwhile. A buffered frame arriving days late marks its
own hour again, which is summed again: counted once, in the hour its device time says.

Hours not closed yet, or marked and not summed again yet, are *pending*: reports sum
their frames themselves (`report_frames`), so a report is exact whatever the worker's lag.
How the adapters mark: SQLite derives the marks from the frame runs inserted since its
last look (their ids only grow), so a commit pays nothing; MongoDB's commit upserts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from shared.reports.totals import LOOK_S, Totals

HOUR_S = 3600


def hour_of(ts: int) -> int:
    return ts - ts % HOUR_S


def marked_hours(first_ts: int, last_ts: int) -> Iterator[int]:
    """The hours whose totals frames at device times [first_ts, last_ts] can change."""
    return iter(range(hour_of(first_ts - LOOK_S), hour_of(last_ts + LOOK_S) + 1, HOUR_S))


@dataclass(frozen=True, slots=True)
class DueHour:
    """A marked hour to sum again; `mark` is what the adapter clears it by (only if unchanged)."""

    device_id: int
    hour: int
    mark: int = 0


class PositionRow(NamedTuple):
    """What reports read of a stored position (a NamedTuple: a month holds millions)."""

    ts: int
    seq: int
    lat_e7: int
    lon_e7: int
    speed_cms: int
    hdop_d: int
    fix_valid: bool
    buffered: bool


class ActivityRow(NamedTuple):
    ts: int
    seq: int
    steps: int
    state: int
    buffered: bool


class HeartbeatRow(NamedTuple):
    ts: int
    seq: int


class ReportFrames(NamedTuple):
    positions: list[PositionRow]
    activities: list[ActivityRow]
    heartbeats: list[HeartbeatRow]


class ReportStore(Protocol):
    async def report_hours_due(self, *, closed_before: int, limit: int) -> list[DueHour]:
        """Marked hours starting before `closed_before` (the caller's "closed": its frames are
        all in), oldest first, at most `limit`."""

    async def save_report_hours(self, summed: Sequence[tuple[DueHour, Totals]]) -> None:
        """Store each hour's totals and clear its mark, unless the hour was marked again since."""

    async def report_hours_pending(self, device_ids: Sequence[int], *, since: int, until: int) -> set[tuple[int, int]]:
        """(device id, hour) of the hours in [since, until) whose stored totals may be out of date."""

    async def report_hour_sums(self, device_ids: Sequence[int], *, since: int, until: int) -> dict[int, Totals]:
        """Each device's stored totals summed over the hours starting in [since, until)
        (devices with none left out)."""

    async def report_hour_totals(self, hours: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Totals]:
        """The stored totals of these (device id, hour), those that have some."""

    async def report_frames(self, device_ids: Sequence[int], *, since: int, until: int) -> dict[int, ReportFrames]:
        """Each device's positions, activities and heartbeats at device times [since, until], oldest
        first, each frame once: what an hour's (or a range edge's) totals are summed from. Devices
        without any frame there are left out. One read for many devices: the hours a worker sums,
        and a report's edges, come a device at a time otherwise."""

"""SQLite adapter, telemetry half (a mixin of SqliteStore): frames kept in runs.

Positions, heartbeats and activities are stored as the listener received them:
a run of consecutive frames from one device read (the bytes, CRCs included),
with the device's id, the earliest and latest device time in the run, and
when it arrived. Reads decode the frames again.

Why not a row per frame: a commit carries a few frames from each of a thousand
devices, and a table keyed by device takes each row at a different place, so
every commit touched a thousand B-tree pages and the insert, not the network,
bounded ingestion (~5 µs a frame against ~2 µs for a run of four; see
docs/performance.md). A run is one row however many frames it holds.

Each frame is still stored once: before a commit's runs are inserted, one
statement finds the stored runs of the same devices whose time spans overlap
theirs (an index probe per run, in SQLite's C code, that finds nothing at
its first step for a run newer than everything stored); only then, rarely (a
retransmission, a backlog uploaded after a coverage gap), are frames decoded
and the ones already stored dropped. A run spans at most `RUN_SPAN_S` of device
time (longer ones are split), which bounds the index range a read scans.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from functools import lru_cache
from itertools import chain
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from shared.protocols.xsole import Activity, BadCrc, FrameBuffer, Heartbeat, Position, XSoleProtocolError, decode
from shared.store.batch import IngestBatch
from shared.store.messages import TELEMETRY_EVENTS
from shared.store.telemetry import StoredActivity, StoredHeartbeat, StoredPosition

T = TypeVar("T")
E = TypeVar("E", Position, Activity, Heartbeat)  # a frame kind kept as history
R = TypeVar("R")  # its stored record

RUN_SPAN_S = 3600
_EVENT_TYPES = tuple(TELEMETRY_EVENTS.values())
_BY_DEVICE_AND_START = itemgetter(0, 1)

# A row of frame_runs: (device id, first device ts, last device ts, received at,
# the frames' bytes as received).
StoredRun = tuple[int, int, int, float, bytes]
_RUN = attrgetter("run")
_FIRST_TS, _LAST_TS, _FRAMES = attrgetter("first_ts"), attrgetter("last_ts"), attrgetter("frames")


def stored_runs(batch: IngestBatch) -> list[StoredRun]:
    """A batch's runs as rows of frame_runs: their bytes as received, each run
    one row (`plan_runs` then leaves out those without a device time, and
    splits the long ones). Alarms are stored apart, and a command result
    only answers its command, so the frames of those that a run holds are
    passed over when it is read."""
    telemetry = list(map(_RUN, batch.runs))
    return list(
        zip(
            batch.run_device_ids,
            map(_FIRST_TS, telemetry),
            map(_LAST_TS, telemetry),
            batch.run_received_at,
            map(_FRAMES, telemetry),
            strict=True,
        )
    )


def decode_frames(frames: bytes) -> Iterator[tuple[bytes, Any]]:
    """Each stored frame's bytes and its event (positions, heartbeats, activities)."""
    buffer = FrameBuffer()
    buffer.feed(frames)
    while True:
        start = len(frames) - buffer.buffered
        try:
            frame = buffer.next_frame()
        except XSoleProtocolError:
            return  # cannot happen for frames the listener framed; stop rather than guess
        if frame is None:
            return
        if type(frame) is BadCrc:
            continue  # cannot happen either: only CRC-checked frames are stored
        event = decode(frame)  # type: ignore[arg-type]  # a RawFrame: BadCrc was skipped above
        if type(event) in _EVENT_TYPES:
            yield frames[start : len(frames) - buffer.buffered], event


def padded_batches(rows: list[tuple[Any, ...]], width: int, most: int = 1024) -> Iterator[tuple[int, list[Any]]]:
    """`rows` as statements of at most `most` rows (a power of two): each one's
    size and flat parameters, padded with rows of NULLs up to a power of two.

    One statement per thousand rows, and only a handful of statement texts,
    all kept in the connection's statement cache: preparing a fresh statement
    of a thousand rows took ~6 ms, more than running it, and every statement
    hands the GIL to the busy event loop and must win it back. The SQL drops
    the padding: a NULL id joins nothing, matches nothing."""
    for start in range(0, len(rows), most):
        chunk = rows[start : start + most]
        size = 1 << (len(chunk) - 1).bit_length()
        params = list(chain.from_iterable(chunk))
        params += [None] * (width * (size - len(chunk)))
        yield size, params


Statement = tuple[str, list[Any]]  # SQL text and its parameters


def statements(sql: str, width: int, rows: list[tuple[Any, ...]]) -> list[Statement]:
    """`sql`, whose `{values}` stands for a VALUES list of `width` columns, over
    `rows` as few statements. Built on the event loop, run by `run_statements`
    on the writer thread, which then holds the GIL for as little as it can."""
    return [(_values_sql(sql, width, size), params) for size, params in padded_batches(rows, width)]


@lru_cache(maxsize=256)
def _values_sql(sql: str, width: int, size: int) -> str:
    return sql.format(values=",".join(["(" + ",".join("?" * width) + ")"] * size))


def run_statements(c: sqlite3.Connection, batch: list[Statement]) -> list[Any]:
    """Run the statements; the rows they return."""
    found: list[Any] = []
    for sql, params in batch:
        found += c.execute(sql, params).fetchall()
    return found


def _split_long(run: StoredRun) -> list[StoredRun]:
    """The run, or its frames one per run when it spans more than RUN_SPAN_S."""
    device_id, first_ts, last_ts, received_at, frames = run
    if last_ts - first_ts <= RUN_SPAN_S:
        return [run]
    return [(device_id, event.ts, event.ts, received_at, raw) for raw, event in decode_frames(frames)]


def _without_stored(run: StoredRun, stored: set[tuple[int, int, int]]) -> StoredRun | None:
    """The run less the frames whose (type, ts, seq) is in `stored`, which it then joins."""
    device_id, _, _, received_at, frames = run
    kept: list[bytes] = []
    times: list[int] = []
    for raw, event in decode_frames(frames):
        key = (raw[3], event.ts, event.seq)
        if key not in stored:
            stored.add(key)
            kept.append(raw)
            times.append(event.ts)
    if not kept:
        return None
    return device_id, min(times), max(times), received_at, b"".join(kept)


class RunPlan(NamedTuple):
    """A commit's runs, ready for `store_runs`: sorted by device and start, long
    ones split, the statements inserting them, the statements looking for
    stored copies of the runs that may have some, and the devices whose runs
    overlap each other within the commit."""

    runs: list[StoredRun]
    insert: list[Statement]
    probe: list[Statement]
    overlapping: set[int]


def plan_runs(runs: list[StoredRun], newest_stored: dict[int, int]) -> RunPlan:
    """The Python half of storing runs, for the event loop (see SqliteStore.commit_telemetry).

    `newest_stored` maps every device with stored runs to the latest device
    time among them; a run starting after it cannot hold a stored frame and
    needs no look at the table. It is raised here, when the commit is planned:
    the writer stores commits in the order they are planned, so the next plan
    already sees this one's runs as stored (a transaction rolled back leaves
    it too high, which only costs a look).
    """
    # A run of command results alone has no device time and holds no history.
    runs = sorted(chain.from_iterable(_split_long(run) for run in runs if run[1] <= run[2]), key=_BY_DEVICE_AND_START)
    probe = [(d, lo, hi) for d, lo, hi, _, _ in runs if lo <= newest_stored.get(d, -1)]
    overlapping: set[int] = set()
    device, reach = None, 0  # the device of the runs seen last, and the latest time they cover
    for device_id, first_ts, last_ts, _, _ in runs:
        if device_id == device and first_ts <= reach:
            overlapping.add(device_id)
        reach = max(reach, last_ts) if device_id == device else last_ts
        device = device_id
        if last_ts > newest_stored.get(device_id, -1):
            newest_stored[device_id] = last_ts
    return RunPlan(runs, statements(_INSERT_RUNS, 5, runs), statements(_PROBE_RUNS, 3, probe), overlapping)


def store_runs(c: sqlite3.Connection, plan: RunPlan) -> None:
    """Insert a commit's runs, each frame once (see the module docstring)."""
    overlapping = plan.overlapping | {device_id for (device_id,) in run_statements(c, plan.probe)}
    insert = plan.insert
    if overlapping:  # rare: decode, leave out the copies, insert what is left
        insert = statements(_INSERT_RUNS, 5, _dedupe(c, plan.runs, overlapping))
    run_statements(c, insert)


_INSERT_RUNS = (
    "INSERT INTO frame_runs(device_id, first_ts, last_ts, received_at, frames)"
    " SELECT * FROM (VALUES {values}) WHERE column1 IS NOT NULL"
)
# CROSS JOIN keeps the commit's runs as the outer loop: without it the planner
# may scan every stored run and probe the commit's.
_PROBE_RUNS = (
    "WITH r(d, lo, hi) AS (VALUES {values}) SELECT DISTINCT r.d FROM r CROSS JOIN frame_runs AS f"
    f" WHERE f.device_id = r.d AND f.last_ts BETWEEN r.lo AND r.hi + {RUN_SPAN_S} AND f.first_ts <= r.hi"
)


def _dedupe(c: sqlite3.Connection, runs: list[StoredRun], devices: set[int]) -> list[StoredRun]:
    """The runs less frames already stored or earlier in the commit, for `devices`."""
    kept: list[StoredRun] = []
    spans: dict[int, tuple[int, int]] = {}  # device -> the time its runs of this commit cover
    for device_id, first_ts, last_ts, _, _ in runs:
        if device_id in devices:
            lo, hi = spans.get(device_id, (first_ts, last_ts))
            spans[device_id] = (min(lo, first_ts), max(hi, last_ts))
    stored: dict[int, set[tuple[int, int, int]]] = {}
    for run in runs:
        device_id = run[0]
        if device_id not in devices:
            kept.append(run)
            continue
        known = stored.get(device_id)
        if known is None:
            known = stored[device_id] = set()
            lo, hi = spans[device_id]
            for (frames,) in c.execute(
                "SELECT frames FROM frame_runs WHERE device_id = ? AND last_ts BETWEEN ? AND ? AND first_ts <= ?",
                (device_id, lo, hi + RUN_SPAN_S, hi),
            ):
                known.update((raw[3], event.ts, event.seq) for raw, event in decode_frames(frames))
        rest = _without_stored(run, known)
        if rest is not None:
            kept.append(rest)
    return kept


class SqliteRuns:
    SCHEMA = """
CREATE TABLE IF NOT EXISTS frame_runs (
    id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL, first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL,
    received_at REAL NOT NULL, frames BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS frame_runs_by_device ON frame_runs(device_id, last_ts);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    # Device id -> the latest device time of its stored runs; see plan_runs.
    # Loaded when the store opens, then kept on the event loop.
    _newest_stored: dict[int, int]

    def _load_newest_stored(self, c: sqlite3.Connection) -> None:
        # One index probe per device (SQLite's min/max optimisation), not a GROUP BY over every run:
        # that read the whole index, ~15 s at 50 M runs before the store could open. Device ids are
        # never reused (AUTOINCREMENT): a retired device's runs may stay, but nothing is stored for it again.
        newest = c.execute("SELECT id, (SELECT max(last_ts) FROM frame_runs WHERE device_id = devices.id) FROM devices")
        self._newest_stored = {device_id: ts for device_id, ts in newest if ts is not None}

    async def positions(
        self,
        device_id: int,
        *,
        since: int | None = None,
        until: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[StoredPosition]:
        return await self._history(device_id, Position, _stored_position, since, until, after, limit)

    async def activities(
        self,
        device_id: int,
        *,
        since: int | None = None,
        until: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[StoredActivity]:
        return await self._history(device_id, Activity, _stored_activity, since, until, after, limit)

    async def heartbeats(
        self,
        device_id: int,
        *,
        since: int | None = None,
        until: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[StoredHeartbeat]:
        return await self._history(device_id, Heartbeat, _stored_heartbeat, since, until, after, limit)

    async def _history(
        self,
        device_id: int,
        event_type: type[E],
        stored: Callable[[E], R],
        since: int | None,
        until: int | None,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[R]:
        """A device's frames of one type, oldest first, each once (runs hold all three kinds mixed)."""
        low = max(since if since is not None else -(2**62), after[0] if after is not None else -(2**62))
        high = until if until is not None else 2**62

        def run(c: sqlite3.Connection) -> list[R]:
            found: dict[tuple[int, int], E] = {}
            enough_before: int | None = None  # once `limit` found: no later run holds anything earlier than this
            checked_at = 0
            for last_ts, frames in c.execute(
                "SELECT last_ts, frames FROM frame_runs WHERE device_id = ? AND last_ts BETWEEN ? AND ?"
                " AND first_ts <= ? ORDER BY last_ts",
                (device_id, low, high + RUN_SPAN_S, high),
            ):
                if enough_before is not None and last_ts - RUN_SPAN_S > enough_before:
                    break
                for _, event in decode_frames(frames):
                    if type(event) is event_type and low <= event.ts <= high:
                        key = (event.ts, event.seq)
                        if after is None or key > after:
                            found.setdefault(key, event)
                if len(found) >= limit and (enough_before is None or len(found) >= checked_at + limit):
                    enough_before = sorted(found)[limit - 1][0]  # only falls as more is found
                    checked_at = len(found)
            return [stored(found[key]) for key in sorted(found)[:limit]]

        return await self._read(run)


def _stored_position(event: Position) -> StoredPosition:
    return StoredPosition(
        event.ts,
        event.seq,
        event.lat_e7,
        event.lon_e7,
        event.alt_m,
        event.speed_cms,
        event.course_ddeg,
        event.sats,
        event.hdop_d,
        event.battery,
        event.fix_valid,
        event.buffered,
    )


def _stored_activity(event: Activity) -> StoredActivity:
    return StoredActivity(event.ts, event.seq, event.steps, event.state, event.cadence, event.battery, event.buffered)


def _stored_heartbeat(event: Heartbeat) -> StoredHeartbeat:
    return StoredHeartbeat(event.ts, event.seq, event.battery, event.rssi)
